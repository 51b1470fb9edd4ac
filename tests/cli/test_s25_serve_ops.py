"""`venue serve` refusing a start as an operator reads it (cli/serve.py): the refusal names
what is wrong, a path or the config's key, not something else."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.sample_config import SAMPLE_CONFIG

REFUSAL_TIMEOUT_S = 30  # a refusal at start: the interpreter's start and the config's check


def _serve(*flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cli.main", "serve", *flags]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=REFUSAL_TIMEOUT_S
    )


def test_a_data_dir_that_cannot_be_made_is_named_not_the_port(tmp_path: Path) -> None:
    """The finding: `--data-dir FILE/sub` (or one under /proc) was refused as `cannot start on
    127.0.0.1:PORT: FILE/sub: Not a directory`, which sent the operator to the port."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    result = _serve("--config", str(SAMPLE_CONFIG), "--port", "0", "--data-dir", f"{a_file}/sub")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == f"venue: cannot start: {a_file}/sub: Not a directory"
    assert "127.0.0.1" not in result.stderr
    assert a_file.read_text() == "", "the file was touched"


def test_a_config_port_out_of_range_names_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "venue.toml"
    config.write_text(SAMPLE_CONFIG.read_text().replace("port = 8765", "port = 70000", 1))
    assert "port = 70000" in config.read_text()
    result = _serve("--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2, result.stderr
    said = f"venue: {config}: [venue] port 70000 is not within 0..65535"
    assert result.stderr.splitlines() == [said]
    assert not (tmp_path / "data").exists()


def test_a_port_flag_out_of_range_names_the_flag(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = _serve("--config", str(SAMPLE_CONFIG), "--port", "70000", "--data-dir", str(data))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == ["venue: --port 70000 is not within 0..65535"]
    assert not data.exists()


NATS_REFUSALS = [  # (--nats, what the one line says of it)
    (",", "--nats ',': no NATS server URL (e.g. nats://127.0.0.1:4222)"),
    ("127.0.0.1:42x", "'127.0.0.1:42x' has a port that is not a number within 0..65535"),
    ("nats//127.0.0.1:4222", "'nats//127.0.0.1:4222' has a path"),
    ("http://127.0.0.1:4222", "its scheme is not one of nats, tls, ws, wss"),
    # nats-py matches the scheme by case: `NATS://h` is the host NATS (review of session 25)
    ("NATS://127.0.0.1:4222", "'NATS://127.0.0.1:4222' is not a NATS URL"),
]


def test_a_nats_url_no_connection_could_use_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    """The finding: a cluster role waits for NATS while it is down, so a mistyped URL had a
    core wait forever (`nats//host:port`: the host "nats"); only commas had it wait and
    ignore SIGTERM; a port that is no number was nats-py's traceback."""
    data = tmp_path / "data"
    for role in ("core", "gateway", "all"):
        for urls, said in NATS_REFUSALS:
            flags = ["--config", str(SAMPLE_CONFIG), "--data-dir", str(data), "--port", "0"]
            result = _serve(*flags, "--role", role, "--nats", urls)
            assert result.returncode == 2, (role, urls, result.stderr)
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("venue: --nats "), lines
            assert said in lines[0], lines
            assert not data.exists(), (role, urls)


def test_the_configs_nats_is_checked_like_the_flag(tmp_path: Path) -> None:
    config = tmp_path / "venue.toml"
    config.write_text(SAMPLE_CONFIG.read_text().replace("[venue]\n", '[venue]\nnats = ","\n', 1))
    result = _serve("--config", str(config), "--role", "core", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"venue: {config}: nats ',': no NATS server URL (e.g. nats://127.0.0.1:4222)"
    ]
