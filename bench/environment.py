"""What a benchmark result must say about where it ran: commit, Python and machine.

Every result file under `bench/results/` starts with `describe()`, so a number can always be
traced to the code and the hardware that produced it.
"""

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GIT_TIMEOUT_S = 5
ROOT = Path(__file__).resolve().parent.parent


def describe(benchmark: str) -> dict[str, Any]:
    """The header of a result file: what ran, when, at which commit, on what."""
    return {
        "benchmark": benchmark,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git_state(),
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "machine": machine(),
    }


def stamp(created_utc: str) -> str:
    """A file-name-safe form of a `created_utc` value (no colons)."""
    return created_utc.replace(":", "")


def free_base(out: Path, stem: str) -> Path:
    """`out/stem`, or `out/stem-2`, `-3`... the first that no file's name starts with: stems
    are stamped to the second, and two runs in one second wrote over each other's files."""
    base, number = out / stem, 1
    while any(out.glob(f"{base.name}[.-]*")):
        number += 1
        base = out / f"{stem}-{number}"
    return base


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
    }


def git_state() -> dict[str, Any]:
    """The commit being measured and whether the tree differs from it, when git is there."""

    def git(*argv: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", *argv],  # read-only: never touch the index
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_S,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None
