"""tests/interleave.py: a step runs once, in the thread that armed it, in the order armed."""

import os
import threading
from pathlib import Path

from tests import interleave


def test_a_step_runs_only_in_the_thread_that_armed_it(tmp_path: Path) -> None:
    ran: list[str] = []
    interleave.at_next("os.rename", lambda args: ran.append(threading.current_thread().name))
    (tmp_path / "a").touch()
    other = threading.Thread(
        target=os.rename, args=(tmp_path / "a", tmp_path / "b"), name="leftover server thread"
    )
    other.start()
    other.join(timeout=10)
    assert not ran, "another thread's rename leaves the step armed"
    os.rename(tmp_path / "b", tmp_path / "c")
    assert ran == [threading.current_thread().name]
    assert not interleave.disarm()


def test_steps_for_one_event_run_in_the_order_armed(tmp_path: Path) -> None:
    ran: list[int] = []

    def step(number: int) -> interleave.Step:
        return lambda args: ran.append(number)

    for number in (1, 2, 3):
        interleave.at_next("os.rename", step(number))
    (tmp_path / "0").touch()
    for number in (1, 2, 3):
        os.rename(tmp_path / str(number - 1), tmp_path / str(number))
    assert ran == [1, 2, 3]


def test_a_step_a_test_left_armed_is_forgotten_before_the_next_test() -> None:
    interleave.at_next("test_interleave.never", lambda args: None)  # (as a failed test would)


def test_the_next_test_finds_no_step_armed() -> None:
    assert not interleave.disarm(), "the autouse fixture disarmed the step the test before left"
