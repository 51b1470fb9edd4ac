"""Where the server's CPU goes under load: `venue bench e2e --profile`.

Owns the choice of profiler, the recording and the two files it leaves: a flame graph SVG
and a table of the top functions by self time (with their total time). py-spy samples the
server from outside over the measured window only (all threads, without pausing it); when
py-spy is missing or cannot attach here, the server runs under cProfile instead, which sees
its main thread only, over its whole life, and gives no stacks (so no flame graph). The
profile says which was used. Leaves the load and the report to `e2e_bench` and `e2e_report`.
"""

import asyncio
import html
import math
import os
import pstats
import shutil
import subprocess
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PY_SPY = "py-spy"
CPROFILE = "cProfile"
SAMPLE_RATE_PER_S = 200  # 2,000 samples in a 10 s run: enough for the top 30, cheap to take
TOP_FUNCTIONS = 30
ATTACH_CHECK_TIMEOUT_S = 10.0  # py-spy reads a sleeping interpreter's stack in well under 1 s
RECORD_GRACE_S = 30.0  # after its duration py-spy writes the file and exits
SVG_WIDTH = 1_200
SVG_ROW_PX = 16
SVG_MIN_WIDTH_PX = 0.5  # narrower frames are invisible: leave them out of the file
SVG_CHAR_PX = 7  # a frame's label is cut to the characters that fit its width


@dataclass
class Profile:
    """What one profiled run found: the method, the samples and the functions' times."""

    method: str  # PY_SPY or CPROFILE
    note: str  # what it covers, in a sentence, for the reader of the table
    stacks: Counter[str] = field(default_factory=Counter)  # py-spy: collapsed stack -> samples
    # (function, self, total): samples for py-spy, seconds for cProfile
    functions: list[tuple[str, float, float]] = field(default_factory=list)
    unit: str = "samples"

    def total(self) -> float:
        return sum(self.stacks.values()) if self.stacks else sum(s for _, s, _ in self.functions)

    def top(self, count: int = TOP_FUNCTIONS) -> list[tuple[str, float, float]]:
        return sorted(self.functions, key=lambda row: (-row[1], -row[2], row[0]))[:count]

    def summary(self) -> dict[str, object]:
        """For the result JSON: the method and the top functions."""
        total = self.total() or 1
        return {
            "method": self.method,
            "note": self.note,
            "unit": self.unit,
            "total": round(self.total(), 6),
            "top": [
                {"function": name, "self_percent": round(100 * own / total, 2),
                 "total_percent": round(100 * whole / total, 2)}
                for name, own, whole in self.top()
            ],
        }  # fmt: skip


# ----------------------------------------------------------------- choosing


def py_spy_path() -> str | None:
    """The py-spy next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / PY_SPY
    return str(beside) if beside.exists() else shutil.which(PY_SPY)


def py_spy_attaches(py_spy: str) -> str | None:
    """None if py-spy can read a Python process of ours here; else why not.

    Tried on a throwaway interpreter before the server starts, so that if it cannot, the
    server can still be started under cProfile instead.
    """
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for _ in range(20):  # until the interpreter is up: its stack names <module>
            done = subprocess.run(
                [py_spy, "dump", "--pid", str(sleeper.pid)],
                capture_output=True,
                text=True,
                timeout=ATTACH_CHECK_TIMEOUT_S,
            )
            if done.returncode == 0 and "<module>" in done.stdout:
                return None
        return (done.stderr or done.stdout).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    finally:
        sleeper.kill()
        sleeper.wait()


def choose() -> tuple[str, str]:
    """(method, why): py-spy if it attaches here, else cProfile and the reason."""
    py_spy = py_spy_path()
    if py_spy is None:
        return CPROFILE, "py-spy is not installed (pip install -e '.[bench]')"
    failure = py_spy_attaches(py_spy)
    if failure is not None:
        return CPROFILE, f"py-spy cannot attach here: {failure}"
    return PY_SPY, ""


# ----------------------------------------------------------------- recording


class PySpyRecording:
    """py-spy recording a process for a while, as collapsed stacks."""

    def __init__(self, pid: int, duration_s: float, directory: Path) -> None:
        self.pid = pid
        self.duration_s = max(1, math.ceil(duration_s))  # py-spy takes whole seconds
        self.raw = directory / "profile-stacks.txt"
        self.log = directory / "py-spy.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        py_spy = py_spy_path()
        assert py_spy is not None, "choose() picked py-spy, so it is there"
        command = [py_spy, "record", "--pid", str(self.pid), "--format", "raw"]
        command += ["--duration", str(self.duration_s), "--rate", str(SAMPLE_RATE_PER_S)]
        # --function: one line per function, not per line in it; --threads: the journal's and
        # the store's threads apart from the loop; --nonblocking: never pause the server.
        command += ["--function", "--threads", "--nonblocking", "--output", str(self.raw)]
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *command, stdout=log, stderr=subprocess.STDOUT
            )

    async def finish(self) -> Profile:
        assert self.process is not None, "start it first"
        try:
            async with asyncio.timeout(self.duration_s + RECORD_GRACE_S):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if not self.raw.exists():
            why = self.log.read_text(errors="replace")[-500:]
            raise RuntimeError(f"py-spy wrote no profile: {why}")
        stacks = parse_collapsed(self.raw.read_text())
        note = (
            f"py-spy, {SAMPLE_RATE_PER_S} samples/s over the measured window, all threads "
            "(a thread's time is the samples it was running in, not waiting)"
        )
        return Profile(PY_SPY, note, stacks, aggregate(stacks))


def cprofile_command(output: Path) -> list[str]:
    """What to put before `-m cli.main serve` to run the server under cProfile."""
    return [sys.executable, "-m", "cProfile", "-o", str(output)]


def read_cprofile(path: Path, why: str) -> Profile:
    """The table of a server that ran under cProfile (written when it stopped)."""
    stats = pstats.Stats(str(path))
    functions = [
        (_cprofile_name(key), values[2], values[3])
        for key, values in stats.stats.items()  # type: ignore[attr-defined]
    ]
    note = (
        f"cProfile ({why}): the server's main thread only, over its whole life "
        "(start and stop included), seconds"
    )
    return Profile(CPROFILE, note, functions=functions, unit="s")


def _cprofile_name(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    return f"{function} ({_short_path(filename)}:{line})" if line else function


def _short_path(filename: str) -> str:
    """A path from the project's root when it is under it (gateway/server.py)."""
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    return filename[len(root) :] if filename.startswith(root) else filename


# ----------------------------------------------------------------- reading the stacks


def parse_collapsed(text: str) -> Counter[str]:
    """py-spy's raw format: one `frame;frame;... count` line per distinct stack."""
    stacks: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def aggregate(stacks: Counter[str]) -> list[tuple[str, float, float]]:
    """(function, self samples, total samples) per function; a thread's root frame is not
    a function. Total counts a stack once per function even if it recurses."""
    own: Counter[str] = Counter()
    whole: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = [f for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        own[frames[-1]] += count
        for frame in set(frames):
            whole[frame] += count
    return [(name, own[name], whole[name]) for name in whole]


# ----------------------------------------------------------------- the files


def table(profile: Profile, title: str) -> str:
    """Markdown: the top functions by self time, with their total time."""
    total = profile.total() or 1
    lines = [
        f"# {title}",
        "",
        f"Profiler: {profile.note}. {profile.total():,.6g} {profile.unit} in all.",
        "Self: in the function itself; total: with what it calls.",
        "",
        f"| self % | total % | self {profile.unit} | total {profile.unit} | function |",
        "|---:|---:|---:|---:|---|",
    ]
    for name, own, whole in profile.top():
        lines.append(
            f"| {100 * own / total:.1f} | {100 * whole / total:.1f} | {own:,.6g} | {whole:,.6g} "
            f"| `{name}` |"
        )
    return "\n".join(lines) + "\n"


def flame_svg(stacks: Counter[str], title: str) -> str:
    """A flame graph (root at the bottom, callers below callees) of collapsed stacks."""
    root: _Node = _Node("all")
    for stack, count in stacks.items():
        root.add(stack.split(";"), count)
    depth = root.depth()
    height = (depth + 2) * SVG_ROW_PX
    scale = SVG_WIDTH / max(root.count, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<text x="4" y="12">{html.escape(title)}</text>',
    ]
    _draw(root, 0.0, 0, scale, height, parts)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


class _Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.children: dict[str, _Node] = {}

    def add(self, frames: list[str], count: int) -> None:
        node = self
        node.count += count
        for frame in frames:
            node = node.children.setdefault(frame, _Node(frame))
            node.count += count

    def depth(self) -> int:
        return 1 + max((child.depth() for child in self.children.values()), default=0)


def _draw(node: _Node, x: float, level: int, scale: float, height: int, parts: list[str]) -> None:
    width = node.count * scale
    if width < SVG_MIN_WIDTH_PX:
        return
    y = height - (level + 1) * SVG_ROW_PX
    hue = 10 + zlib.crc32(node.name.encode()) % 50  # warm colours, stable from run to run
    label = html.escape(node.name)
    text = html.escape(node.name[: int(width / SVG_CHAR_PX)])
    parts.append(
        f"<g><title>{label} ({node.count:,} samples)</title>"
        f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{SVG_ROW_PX - 1}" '
        f'fill="hsl({hue},90%,60%)"/>'
        f'<text x="{x + 2:.1f}" y="{y + SVG_ROW_PX - 4}">{text}</text></g>'
    )
    child_x = x
    for child in sorted(node.children.values(), key=lambda c: c.name):
        _draw(child, child_x, level + 1, scale, height, parts)
        child_x += child.count * scale


def write(profile: Profile, base: Path, title: str) -> list[Path]:
    """`<base>-profile.md` (the table) and, with stacks, `<base>-profile.svg`."""
    paths = []
    if profile.stacks:
        svg = base.parent / f"{base.name}-profile.svg"
        svg.write_text(flame_svg(profile.stacks, title))
        paths.append(svg)
    markdown = base.parent / f"{base.name}-profile.md"
    markdown.write_text(table(profile, title))
    paths.append(markdown)
    return paths
