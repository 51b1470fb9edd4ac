"""Where the server's CPU goes under load: `venue bench e2e --profile`.

Owns the choice of profiler, the recording and the two files it leaves: a flame graph SVG
and a table of the top functions by self time (with their total time), in ms of CPU. py-spy
samples the server from outside over the measured window (all threads, never pausing it),
twice at once: the runnable threads (state R in /proc: threads blocked in epoll, a disk
write or a lock are left out, but R also means queued for a core) and the GIL holder. The
loop thread's samples come from the GIL recording (else its queued wake-ups land in
Runner.run), the others' from the runnable one, and each thread's samples are weighed to
the CPU it used (/proc): thread totals are exact. It cannot name C functions (they count to
the innermost Python one), nor see the loop's C work outside the GIL (uvloop's epoll and
socket reads: 2-7% of the server under perf), which is spread over its Python rows. Without
py-spy the server runs under cProfile instead: main thread, whole life, no flame graph.
"""

import asyncio
import html
import math
import os
import pstats
import re
import shutil
import subprocess
import sys
import zlib
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.server_process import ThreadCpu

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
CPU_UNIT = "ms of CPU"
RUNNABLE, GIL = "runnable", "gil"  # py-spy's two recordings: every runnable thread; GIL holder
THREAD_FRAME = re.compile(r"^thread \((\d+)\)")  # py-spy --threads: a stack's root frame
NO_PYTHON_STACK = "(no Python stack sampled)"  # a thread that used CPU but gave no sample


@dataclass
class Profile:
    """What one profiled run found: the method, the samples and the functions' times."""

    method: str  # PY_SPY or CPROFILE
    note: str  # what it covers, in a sentence, for the reader of the table
    # py-spy: collapsed stack -> its weight (ms of CPU; samples when no CPU was read)
    stacks: Mapping[str, float] = field(default_factory=dict)
    # (function, self, total): in `unit` (ms of CPU or samples for py-spy, s for cProfile)
    functions: list[tuple[str, float, float]] = field(default_factory=list)
    unit: str = "samples"
    threads: list[tuple[str, int, float]] = field(default_factory=list)  # name, samples, ms

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
    """py-spy recording a process for a while, twice at once, as collapsed stacks: the
    runnable threads' stacks (`RUNNABLE`) and the GIL holder's (`GIL`)."""

    def __init__(self, pid: int, duration_s: float, directory: Path) -> None:
        self.pid = pid
        self.duration_s = max(1, math.ceil(duration_s))  # py-spy takes whole seconds
        self.raw = {
            RUNNABLE: directory / "profile-stacks.txt",
            GIL: directory / "profile-gil-stacks.txt",
        }
        self.log = directory / "py-spy.log"
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        py_spy = py_spy_path()
        assert py_spy is not None, "choose() picked py-spy, so it is there"
        with self.log.open("wb") as log:
            for kind, path in self.raw.items():
                command = [py_spy, "record", "--pid", str(self.pid), "--format", "raw"]
                command += ["--duration", str(self.duration_s), "--rate", str(SAMPLE_RATE_PER_S)]
                # --function: one line per function, not per line in it; --threads: the
                # journal's and the store's threads apart from the loop; --nonblocking: never
                # pause the server; --gil: only the thread holding the GIL.
                command += ["--function", "--threads", "--nonblocking", "--output", str(path)]
                command += ["--gil"] if kind == GIL else []
                self.processes.append(
                    await asyncio.create_subprocess_exec(
                        *command, stdout=log, stderr=subprocess.STDOUT
                    )
                )

    async def finish(self, threads: list[ThreadCpu] | None) -> Profile:
        """The profile: each thread's samples weighed by the CPU it used (`threads`, over
        the measured window; `weigh`), the loop's from the GIL recording (`choose_samples`);
        without a CPU reading, the runnable samples as they are."""
        await self._stopped()
        if not self.raw[RUNNABLE].exists():
            why = self.log.read_text(errors="replace")[-500:]
            raise RuntimeError(f"py-spy wrote no profile: {why}")
        runnable = parse_collapsed(self.raw[RUNNABLE].read_text())
        rate = f"py-spy, {SAMPLE_RATE_PER_S} samples/s over the measured window, all threads"
        if threads is None:
            note = f"{rate}: runnable threads' samples (running or queued for a core), as taken"
            return Profile(PY_SPY, note, runnable, aggregate(runnable))
        gil = self.raw[GIL]  # without it, the loop's runnable samples stand in
        held = parse_collapsed(gil.read_text()) if gil.exists() else Counter[str]()
        samples = choose_samples(runnable, held, self.pid)
        stacks = weigh(samples, threads)
        note = (
            f"{rate}; each thread's samples weighed to the CPU it used (/proc), the loop's "
            "taken while it held the GIL, the other threads' while runnable"
        )
        by_thread = thread_rows(samples, threads)
        return Profile(PY_SPY, note, stacks, aggregate(stacks), CPU_UNIT, by_thread)

    async def _stopped(self) -> None:
        """Both py-spys have written their files and exited (or been killed, if late)."""
        assert self.processes, "start it first"
        for process in self.processes:
            try:
                async with asyncio.timeout(self.duration_s + RECORD_GRACE_S):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


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


def _thread_id(stack: str) -> int | None:
    found = THREAD_FRAME.match(stack)
    return int(found.group(1)) if found else None


def choose_samples(runnable: Counter[str], gil: Counter[str], loop_thread_id: int) -> Counter[str]:
    """The loop thread's samples from the GIL recording, the other threads' from the
    runnable one. Runnable (state R) also means queued for a core: after each wake-up from
    epoll the loop is sampled in Runner.run until it runs (on a busy machine, up to most of
    its samples); it takes the GIL to run Python, so its GIL samples are that work (not the
    file journal's O_DSYNC write, which it makes without the GIL: that time is spread over
    its other samples). The journal's thread (over NATS) and the store's work mostly
    without the GIL (SQLite), so only their runnable samples see it. If the GIL recording
    missed the loop, its runnable samples stand in."""

    def of_loop(samples: Counter[str]) -> Counter[str]:
        return Counter({s: n for s, n in samples.items() if _thread_id(s) == loop_thread_id})

    return (runnable - of_loop(runnable)) + (of_loop(gil) or of_loop(runnable))


def _samples_by_thread(samples: Counter[str]) -> Counter[int]:
    counts: Counter[int] = Counter()
    for stack, count in samples.items():
        thread_id = _thread_id(stack)
        if thread_id is not None:
            counts[thread_id] += count
    return counts


def weigh(samples: Counter[str], threads: list[ThreadCpu]) -> dict[str, float]:
    """Stacks weighed in ms of CPU: each thread's CPU over the window shared among its
    samples, so a thread that was queued or sampled while it used no CPU weighs what it
    used, not what it was seen; a thread that used CPU but gave no sample gets one stack
    that says so. A stack of a thread that /proc did not list (it ended) weighs nothing."""
    cpu_ms = {t.thread_id: 1_000 * (t.user_s + t.system_s) for t in threads}
    per_thread = _samples_by_thread(samples)
    weighed = {}
    for stack, count in samples.items():
        thread_id = _thread_id(stack)
        if thread_id is not None and cpu_ms.get(thread_id):
            weighed[stack] = cpu_ms[thread_id] * count / per_thread[thread_id]
    for thread in threads:
        if cpu_ms[thread.thread_id] and not per_thread[thread.thread_id]:
            stack = f"thread ({thread.thread_id}): {thread.name};{NO_PYTHON_STACK}"
            weighed[stack] = cpu_ms[thread.thread_id]
    return weighed


def thread_rows(samples: Counter[str], threads: list[ThreadCpu]) -> list[tuple[str, int, float]]:
    """(name, samples, ms of CPU) per thread that was sampled or used CPU, busiest first."""
    counts = _samples_by_thread(samples)
    rows = [
        (t.name, counts[t.thread_id], 1_000 * (t.user_s + t.system_s))
        for t in threads
        if counts[t.thread_id] or t.user_s + t.system_s
    ]
    return sorted(rows, key=lambda row: (-row[2], -row[1], row[0]))


def aggregate(stacks: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(function, self samples, total samples) per function; a thread's root frame is not
    a function. Total counts a stack once per function even if it recurses."""
    own: dict[str, float] = defaultdict(float)
    whole: dict[str, float] = defaultdict(float)
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
        f"Profiler: {profile.note}. {_amount(profile.total(), profile.unit)} {profile.unit} "
        "in all.",
        "Self: in the function itself (and the C code it calls); total: with what it calls.",
        "",
    ]
    if profile.threads:
        lines += ["| thread | samples | ms of CPU |", "|---|---:|---:|"]
        lines += [f"| {name} | {n:,} | {ms:,.1f} |" for name, n, ms in profile.threads] + [""]
    lines += [
        f"| self % | total % | self {profile.unit} | total {profile.unit} | function |",
        "|---:|---:|---:|---:|---|",
    ]
    for name, own, whole in profile.top():
        lines.append(
            f"| {100 * own / total:.1f} | {100 * whole / total:.1f} | {_amount(own, profile.unit)} "
            f"| {_amount(whole, profile.unit)} | `{name}` |"
        )
    return "\n".join(lines) + "\n"


def _amount(value: float, unit: str) -> str:
    """ms of CPU to a tenth; samples and seconds as they are (to 6 digits)."""
    return f"{value:,.1f}" if unit == CPU_UNIT else f"{value:,.6g}"


def flame_svg(stacks: Mapping[str, float], title: str, unit: str = "samples") -> str:
    """A flame graph (root at the bottom, callers below callees) of collapsed stacks."""
    root: _Node = _Node("all")
    for stack, count in stacks.items():
        root.add(stack.split(";"), count)
    depth = root.depth()
    height = (depth + 2) * SVG_ROW_PX
    scale = SVG_WIDTH / (root.count or 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<text x="4" y="12">{html.escape(title)}</text>',
    ]
    _draw(root, 0.0, 0, scale, height, unit, parts)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


class _Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0.0
        self.children: dict[str, _Node] = {}

    def add(self, frames: list[str], count: float) -> None:
        node = self
        node.count += count
        for frame in frames:
            node = node.children.setdefault(frame, _Node(frame))
            node.count += count

    def depth(self) -> int:
        return 1 + max((child.depth() for child in self.children.values()), default=0)


def _draw(
    node: _Node, x: float, level: int, scale: float, height: int, unit: str, parts: list[str]
) -> None:
    width = node.count * scale
    if width < SVG_MIN_WIDTH_PX:
        return
    y = height - (level + 1) * SVG_ROW_PX
    hue = 10 + zlib.crc32(node.name.encode()) % 50  # warm colours, stable from run to run
    label = html.escape(node.name)
    text = html.escape(node.name[: int(width / SVG_CHAR_PX)])
    parts.append(
        f"<g><title>{label} ({_amount(node.count, unit)} {unit})</title>"
        f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{SVG_ROW_PX - 1}" '
        f'fill="hsl({hue},90%,60%)"/>'
        f'<text x="{x + 2:.1f}" y="{y + SVG_ROW_PX - 4}">{text}</text></g>'
    )
    child_x = x
    for child in sorted(node.children.values(), key=lambda c: c.name):
        _draw(child, child_x, level + 1, scale, height, unit, parts)
        child_x += child.count * scale


def write(profile: Profile, base: Path, title: str) -> list[Path]:
    """`<base>-profile.md` (the table) and, with stacks, `<base>-profile.svg`."""
    paths = []
    if profile.stacks:
        svg = base.parent / f"{base.name}-profile.svg"
        svg.write_text(flame_svg(profile.stacks, title, profile.unit))
        paths.append(svg)
    markdown = base.parent / f"{base.name}-profile.md"
    markdown.write_text(table(profile, title))
    paths.append(markdown)
    return paths
