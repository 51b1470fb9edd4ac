"""`venue admin` as an operator runs it (client/admin_cli.py): what it says when it cannot
find the credentials it was pointed at."""

import os
import subprocess
import sys

from tests.conftest import ROOT
from tests.sample_config import SAMPLE_CONFIG

TIMEOUT_S = 30  # refused before connecting: the interpreter's start and the config's read
NOWHERE = "ws://127.0.0.1:47299/ws/trade"  # nothing listens: the credentials come first


def _admin(*flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cli.main", "admin", "set-status", "AAPLx-USD", "open"]
    command += ["--config", str(SAMPLE_CONFIG), "--url", NOWHERE, *flags]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, env=env
    )


def test_a_key_without_its_secret_that_the_config_lacks_is_named() -> None:
    """The finding: `--key K` with no secret, K not an admin key of the config, said "no
    admin key in venue.toml: give --key and --secret" of a config that has one, to an
    operator who gave --key."""
    result = _admin("--key", "ops-2")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"venue admin: ops-2 is no admin key of {SAMPLE_CONFIG}: give its secret too"
        " (--secret or $VENUE_ADMIN_SECRET)"
    ]


def test_the_environments_key_is_named_likewise() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENUE_ADMIN_")}
    result = _admin(env=env | {"VENUE_ADMIN_KEY": "ops-3"})
    assert result.returncode == 2, result.stderr
    assert "ops-3 is no admin key of" in result.stderr


def test_the_configs_admin_key_is_still_found_by_its_name() -> None:
    """`--key demo-admin` alone takes its secret from the config: it gets as far as the
    connection (here to nowhere)."""
    result = _admin("--key", "demo-admin")
    assert result.returncode == 2, result.stderr
    assert f"no answer from {NOWHERE}" in result.stderr
