"""`matching-engine` (PyPI, pure Python 3.12+) behind the adapter interface, in a subprocess.

The package needs Python 3.12 and the project runs on 3.11, so the adapter finds a working
`python3.12` (on the PATH, else a pyenv install), makes a venv for it once under the user's
cache (`~/.cache/tokenvenue/venvs/`, outside the repository), installs the pinned package
there and runs `matching_engine_driver.py` in it with the same seeded workload in plain form
(`bench.adapters.thirdparty`). The driver times each command itself, so the figures leave
out the pipe and JSON. Without Python 3.12, or when the install fails, the engine is skipped
with the reason.
"""

import gc
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from bench.adapters.base import AdapterResult
from bench.adapters.thirdparty import plain_commands
from bench.workloads import Workload

PACKAGE = "matching-engine"
VERSION = "0.1.1"  # the version the driver was written against and checked with
PYTHON = "python3.12"
DRIVER = Path(__file__).with_name("matching_engine_driver.py")
INSTALL_TIMEOUT_S = 600  # a venv and two small wheels; minutes only on a slow index
PROBE_TIMEOUT_S = 30
ERROR_TAIL_CHARS = 300  # enough of pip's stderr to say why, short enough for one table line


def cache_dir() -> Path:
    """Where the venv lives: the user's cache, never the repository (ruff and mypy walk it)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tokenvenue" / "venvs" / f"{PACKAGE}-{VERSION}-py312"


def find_python312() -> str | None:
    """A `python3.12` that runs: a pyenv shim on the PATH may exist yet refuse to start."""
    found = shutil.which(PYTHON)
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    installed = sorted(pyenv_root.glob("versions/3.12*/bin/python3.12"), reverse=True)
    for candidate in [found, *map(str, installed)]:
        if candidate and _runs(candidate):
            return candidate
    return None


def _runs(python: str) -> bool:
    probe = [python, "-c", "import sys; assert sys.version_info >= (3, 12)"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=PROBE_TIMEOUT_S).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_venv() -> tuple[Path | None, str]:
    """The venv's python, made and installed on first use; or None and why not."""
    venv = cache_dir()
    python = venv / "bin" / "python"
    if (venv / "installed").exists():
        return python, ""
    base = find_python312()
    if base is None:
        return None, f"needs {PYTHON}, which is not on the PATH (nor in pyenv)"
    # Built beside the final folder and renamed into place: a concurrent run or a failed
    # install never leaves a half-made venv where the next run would trust it.
    building = venv.with_name(f"{venv.name}.building-{os.getpid()}")
    steps = [
        [base, "-m", "venv", str(building)],
        [str(building / "bin" / "python"), "-m", "pip", "install", "-q", f"{PACKAGE}=={VERSION}"],
    ]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
            if done.returncode != 0:
                error = done.stderr.strip()[-ERROR_TAIL_CHARS:]
                return None, f"could not install {PACKAGE}=={VERSION}: {error}"
        (building / "installed").touch()
        with suppress(OSError):  # another run finished first: use its venv
            building.rename(venv)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"could not install {PACKAGE}=={VERSION}: {error}"
    finally:
        shutil.rmtree(building, ignore_errors=True)
    if not (venv / "installed").exists():
        return None, f"could not install {PACKAGE}=={VERSION} under {venv}"
    return python, ""


class MatchingEngineAdapter:
    """`matching_engine.engine.MatchingEngine` in its own Python 3.12 process."""

    name = PACKAGE

    def __init__(self) -> None:
        self.python: Path | None = None
        self.setup: list[tuple[int, ...]] = []

    def available(self) -> tuple[bool, str]:
        self.python, reason = ensure_venv()
        return self.python is not None, reason

    def prepare(self, workload: Workload) -> Sequence[object]:
        self.setup, plain = plain_commands(workload.setup, workload.commands)
        return plain

    def run(self, commands: Sequence[object]) -> AdapterResult:
        assert self.python is not None, "available() first"
        request = {
            # The child mirrors the collector policy the comparison set around this call.
            "gc_enabled": gc.isenabled(),
            "gc_threshold": gc.get_threshold()[0],
            "gc_freeze": gc.get_freeze_count() > 0,
            "setup": self.setup,
            "commands": list(commands),
        }
        done = subprocess.run(
            [str(self.python), str(DRIVER)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise RuntimeError(f"the {PACKAGE} driver failed (exit {done.returncode})")
        result = json.loads(done.stdout)
        return AdapterResult(
            result["seconds"], result["latencies_ns"], result["traded_qty"], result["cpu_seconds"]
        )
