"""`bench.profiling`: reading py-spy's collapsed stacks, weighing them by the CPU each thread
used, the table and the flame graph."""

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench import profiling, server_process
from bench.server_process import ThreadCpu
from tests.conftest import ROOT

STACKS = """\
thread (1);main (cli/main.py:1);run (gateway/server.py:10);_release (gateway/server.py:20) 6
thread (1);main (cli/main.py:1);run (gateway/server.py:10) 2
thread (2);_worker (concurrent/thread.py:5);commit (core/journal.py:30) 3
thread (1);main (cli/main.py:1);f (x.py:1);f (x.py:1) 1
not a line
"""


def test_collapsed_stacks_give_self_and_total_per_function() -> None:
    stacks = profiling.parse_collapsed(STACKS)
    assert sum(stacks.values()) == 12
    rows = {name: (own, whole) for name, own, whole in profiling.aggregate(stacks)}
    assert rows["_release (gateway/server.py:20)"] == (6, 6)
    assert rows["run (gateway/server.py:10)"] == (2, 8)
    assert rows["main (cli/main.py:1)"] == (0, 9)
    assert rows["f (x.py:1)"] == (1, 1)  # a recursion counts once in total
    assert not any(name.startswith("thread (") for name in rows)  # a thread is no function


def test_the_table_lists_functions_by_self_time(tmp_path: Path) -> None:
    stacks = profiling.parse_collapsed(STACKS)
    profile = profiling.Profile("py-spy", "a test", stacks, profiling.aggregate(stacks))
    paths = profiling.write(profile, tmp_path / "e2e-x", "a title")
    assert [p.name for p in paths] == ["e2e-x-profile.svg", "e2e-x-profile.md"]
    table = paths[1].read_text().splitlines()
    rows = [line for line in table if line.startswith("| ") and "`" in line]
    assert "_release" in rows[0] and "commit" in rows[1]
    assert rows[0].startswith("| 50.0 | 50.0 | 6 | 6 |")
    svg = paths[0].read_text()
    assert (
        svg.startswith("<svg") and svg.count("<rect") == 10
    )  # all, 2 threads, 7 frames in the tree


def test_a_profile_without_stacks_writes_only_the_table(tmp_path: Path) -> None:
    profile = profiling.Profile("cProfile", "a test", Counter(), [("f (a.py:1)", 1.0, 2.0)], "s")
    (path,) = profiling.write(profile, tmp_path / "e2e-x", "a title")
    assert path.name == "e2e-x-profile.md" and "`f (a.py:1)`" in path.read_text()


RUNNABLE = """\
thread (10): MainThread;main (cli/main.py:1);run (asyncio/runners.py:86) 7
thread (10): MainThread;main (cli/main.py:1);send_frames (gateway/transport.py:1) 1
thread (11): journal;_journal_work (core/sequencer.py:1);_write (core/journal.py:1) 3
thread (12): ledger-store;_run (core/store_thread.py:1);wait (threading.py:1) 5
"""
GIL = """\
thread (10): MainThread;main (cli/main.py:1);send_frames (gateway/transport.py:1) 3
thread (10): MainThread;main (cli/main.py:1);decode (gateway/wire.py:1) 1
thread (11): journal;_journal_work (core/sequencer.py:1) 1
"""
LOOP = 10


def _cpu(thread_id: int, name: str, seconds: float) -> ThreadCpu:
    return ThreadCpu(thread_id, name, user_s=seconds / 2, system_s=seconds / 2)


def test_the_loops_samples_come_from_the_gil_recording_the_others_from_the_runnable() -> None:
    runnable, gil = profiling.parse_collapsed(RUNNABLE), profiling.parse_collapsed(GIL)
    chosen = profiling.choose_samples(runnable, gil, LOOP)
    assert not any("runners.py" in stack for stack in chosen)  # the loop queued after epoll
    assert sum(n for stack, n in chosen.items() if stack.startswith("thread (10)")) == 4
    assert sum(n for stack, n in chosen.items() if stack.startswith("thread (11)")) == 3
    # a GIL recording that missed the loop: its runnable samples stand in
    alone = profiling.choose_samples(runnable, Counter(), LOOP)
    assert sum(n for stack, n in alone.items() if stack.startswith("thread (10)")) == 8


def test_each_thread_weighs_the_cpu_it_used_not_the_samples_it_gave() -> None:
    samples = profiling.parse_collapsed(RUNNABLE)
    threads = [
        _cpu(10, "loop", 0.8),  # 8 samples share 800 ms
        _cpu(11, "journal", 0.03),  # 3 samples share 30 ms
        _cpu(12, "ledger-store", 0.0),  # 5 samples, sampled while queued: no CPU, no weight
        _cpu(13, "worker", 0.02),  # CPU but no Python sample: a row that says so
    ]
    stacks = profiling.weigh(samples, threads)
    assert sum(stacks.values()) == pytest.approx(850.0)
    rows = {name: own for name, own, _ in profiling.aggregate(stacks)}
    assert rows["run (asyncio/runners.py:86)"] == pytest.approx(700.0)
    assert rows["_write (core/journal.py:1)"] == pytest.approx(30.0)
    assert "wait (threading.py:1)" not in rows
    assert rows[profiling.NO_PYTHON_STACK] == pytest.approx(20.0)
    assert profiling.thread_rows(samples, threads) == [
        ("loop", 8, pytest.approx(800.0)),
        ("journal", 3, pytest.approx(30.0)),
        ("worker", 0, pytest.approx(20.0)),
        ("ledger-store", 5, 0.0),
    ]


def test_a_weighed_profile_reads_in_ms_of_cpu_with_its_threads(tmp_path: Path) -> None:
    samples = profiling.parse_collapsed(RUNNABLE)
    threads = [_cpu(10, "loop", 0.8), _cpu(11, "journal", 0.03)]
    stacks = profiling.weigh(samples, threads)
    rows = profiling.thread_rows(samples, threads)
    profile = profiling.Profile(
        "py-spy", "a test", stacks, profiling.aggregate(stacks), profiling.CPU_UNIT, rows
    )
    svg, table = profiling.write(profile, tmp_path / "e2e-x", "a title")
    text = table.read_text()
    assert "| loop | 8 | 800.0 |" in text and "| journal | 3 | 30.0 |" in text
    assert "| 84.3 | 84.3 | 700.0 | 700.0 | `run (asyncio/runners.py:86)` |" in text
    assert "(700.0 ms of CPU)" in svg.read_text()


BUSY_AND_IDLE = """
import select, threading, time
from bench.server_process import name_os_threads

name_os_threads()  # the idle thread is "idle" in /proc too

def waiting(reader):  # blocked in the kernel for good: nothing is ever written
    select.select([reader], [], [])

def working(until):
    total = 0
    while time.monotonic() < until:
        total += 1

import os
reader, _ = os.pipe()
threading.Thread(target=waiting, args=(reader,), name="idle", daemon=True).start()
print("ready", flush=True)
working(time.monotonic() + 30)
"""


def test_a_real_profile_counts_the_working_thread_not_the_idle_ones_waiting(
    tmp_path: Path,
) -> None:
    method, why = profiling.choose()
    if method != profiling.PY_SPY:
        pytest.skip(why)
    process = subprocess.Popen(
        [sys.executable, "-c", BUSY_AND_IDLE],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        profile = asyncio.run(_record(process.pid, tmp_path))
    finally:
        process.kill()
        process.wait()
    functions = {name for name, _, _ in profile.functions}
    assert any(name.startswith("working (") for name in functions), functions
    assert not any(name.startswith(("waiting (", "select")) for name in functions), functions
    threads = {name: (samples, ms) for name, samples, ms in profile.threads}
    assert "idle" not in threads  # neither sampled nor using CPU
    assert threads["loop"][0] > 0
    assert profile.unit == profiling.CPU_UNIT
    assert profile.total() == pytest.approx(threads["loop"][1])


async def _record(pid: int, directory: Path) -> profiling.Profile:
    before = server_process.read_thread_cpu(pid)
    recording = profiling.PySpyRecording(pid, 1.0, directory)
    await recording.start()
    for running in recording.processes:
        await running.wait()
    after = server_process.read_thread_cpu(pid)
    assert before is not None and after is not None
    return await recording.finish(server_process.thread_cpu_used(before, after))
