"""The adapter interface of `venue bench engine --compare`: one engine behind four calls.

An adapter prepares a workload untimed (fresh state, setup replayed, commands converted to
its own form) and then runs the converted commands with a clock read around each one. It
reports the loop's wall time and process CPU time (which other work on a shared machine
inflates far less), every command's latency and the total traded quantity, which it adds
up after the clock stops so that counting never costs timed work.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bench.workloads import Workload


@dataclass(frozen=True)
class AdapterResult:
    """What one timed run produced."""

    seconds: float  # wall time of the whole loop, clock reads included
    latencies_ns: list[int]  # one per command, in command order
    traded_qty: int  # sum of the quantity of every trade, in qty units
    cpu_seconds: float = 0.0  # process CPU time of the same loop; 0: the engine cannot say


class EngineAdapter(Protocol):
    """One engine as the comparison sees it."""

    name: str

    def available(self) -> tuple[bool, str]:
        """Whether it can run here and, when it cannot, why not."""
        ...

    def prepare(self, workload: Workload) -> Sequence[object]:
        """Fresh state with the setup applied; the timed commands in this engine's form."""
        ...

    def run(self, commands: Sequence[object]) -> AdapterResult:
        """Run the prepared commands, timing each one."""
        ...


def time_each(
    step: Callable[[Any], object], commands: Sequence[object]
) -> tuple[float, list[int], list[object], float]:
    """Call `step(command)` for each command with a clock read around it.

    Returns the loop's seconds, the latencies, what each call returned (kept, not
    inspected, so that the caller counts trades after the clock stops) and the loop's
    process CPU seconds.
    """
    clock = time.perf_counter_ns
    count = len(commands)
    latencies = [0] * count
    outputs: list[object] = [None] * count
    cpu_started = time.process_time()
    started = clock()
    for i, command in enumerate(commands):
        before = clock()
        outputs[i] = step(command)
        latencies[i] = clock() - before
    seconds = (clock() - started) / 1e9
    cpu_seconds = time.process_time() - cpu_started
    return seconds, latencies, outputs, cpu_seconds
