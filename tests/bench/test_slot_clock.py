"""The e2e trading clients' timetable clock: every slot reported, in order, never early."""

import asyncio
import time

import pytest

from bench import slot_clock
from bench.slot_clock import SlotClock

SLOTS = 40
INTERVAL_S = 0.005


def run_timetable(start_delay_s: float) -> tuple[SlotClock, list[tuple[int, float]], bool]:
    """A clock of SLOTS slots, the first `start_delay_s` from now: each report (n, when)."""
    reports: list[tuple[int, float]] = []

    async def session() -> tuple[SlotClock, bool]:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def on_due(due: int) -> None:
            reports.append((due, time.perf_counter()))
            if due == SLOTS:
                done.set_result(None)

        clock = SlotClock(loop, time.perf_counter() + start_delay_s, INTERVAL_S, SLOTS, on_due)
        clock.start()
        precise = clock.precise
        await asyncio.wait_for(done, 10)
        await asyncio.sleep(3 * INTERVAL_S)  # stopped: nothing more comes
        return clock, precise

    clock, precise = asyncio.run(session())
    return clock, reports, precise


def check(clock: SlotClock, reports: list[tuple[int, float]]) -> None:
    dues = [due for due, _ in reports]
    assert dues == sorted(set(dues)) and dues[-1] == SLOTS, "each report further, to the last"
    for due, at in reports:
        assert at >= clock.slot_s(due - 1), f"slot {due - 1} reported before its time"
    assert clock.slot_s(1) - clock.slot_s(0) == pytest.approx(INTERVAL_S)


def test_a_timerfd_wakes_the_loop_at_each_slot() -> None:
    clock, reports, precise = run_timetable(0.02)
    assert precise, "Linux: a timerfd on perf_counter's clock"
    check(clock, reports)
    assert len(reports) > SLOTS // 4, "woken slot by slot, not once at the end"


def test_slots_already_past_are_reported_at_once() -> None:
    clock, reports, _ = run_timetable(-SLOTS * INTERVAL_S)
    check(clock, reports)
    assert reports[0][0] == SLOTS, "all due at the start: one report"


def test_without_a_timerfd_the_loops_timers_report_the_slots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(slot_clock, "_timerfd_functions", lambda: None)
    clock, reports, precise = run_timetable(0.01)
    assert not precise
    check(clock, reports)
