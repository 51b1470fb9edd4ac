"""`bench.profiling`: reading py-spy's collapsed stacks, the table and the flame graph."""

from collections import Counter
from pathlib import Path

from bench import profiling

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
