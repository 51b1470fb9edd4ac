"""Runs `matching-engine` (PyPI, Python 3.12+) on a plain workload: a script, not a module.

Started by `bench.adapters.matching_engine_adapter` with the Python of a venv where the
package is installed; imports only the standard library and `matching_engine`, never the
project. Reads one JSON object on stdin (the parent's collector policy, "setup" and
"commands" in the plain forms of `bench.adapters.thirdparty`), applies the setup untimed,
times each command as `bench.adapters.base.time_each` does and prints one JSON object
{"seconds", "cpu_seconds", "latencies_ns", "traded_qty"}. Every command is a prebuilt
`SequencedCommand` except a price move: cancel, then a new order (a fresh id) of the qty
the cancel reports.
"""

import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from matching_engine.domain import CancelOrder, NewOrder, SequencedCommand, Side, TimeInForce
from matching_engine.engine import MatchingEngine
from matching_engine.events import OrderCancelled, Trade

PLACE, CANCEL, MOVE = 0, 1, 2  # as in bench.adapters.thirdparty
MOVED_IDS_START = 1 << 40  # ids for the new half of a move, far above the venue's ids


def convert(commands: list[list[int]], state: dict[str, Any]) -> list[Any]:
    """Prebuilt commands; `state` carries ids, sides, owners and the next seq across calls."""
    out: list[Any] = []
    current, sides = state["current"], state["sides"]
    for plain in commands:
        state["seq"] += 1
        seq = state["seq"]
        if plain[0] == PLACE:
            _, order_id, account, buy, price, qty, ioc = plain
            side = Side.BUY if buy else Side.SELL
            tif = TimeInForce.IOC if ioc else TimeInForce.GTC
            current[order_id], sides[order_id] = order_id, side
            out.append(
                SequencedCommand(seq, seq, NewOrder(order_id, account, side, price, qty, tif=tif))
            )
        elif plain[0] == CANCEL:
            _, order_id, account = plain
            out.append(SequencedCommand(seq, seq, CancelOrder(current[order_id], account)))
        else:
            _, order_id, account, price = plain
            cancel = SequencedCommand(seq, seq, CancelOrder(current[order_id], account))
            state["moved"] += 1
            new_id = current[order_id] = MOVED_IDS_START + state["moved"]
            state["seq"] += 1
            out.append((cancel, state["seq"], new_id, account, sides[order_id], price))
    return out


def make_step(engine: MatchingEngine) -> Callable[[Any], Any]:
    process = engine.process

    def step(command: Any) -> Any:
        if type(command) is SequencedCommand:
            return process(command)
        cancel, seq, new_id, account, side, price = command
        events = process(cancel)
        canceled = events[0]
        if type(canceled) is not OrderCancelled:
            return events
        order = NewOrder(new_id, account, side, price, canceled.remaining)
        return events + process(SequencedCommand(seq, seq, order))

    return step


def main() -> None:
    request = json.load(sys.stdin)
    state = {"current": {}, "sides": {}, "seq": 0, "moved": 0}
    setup = convert(request["setup"], state)
    commands = convert(request["commands"], state)
    step = make_step(MatchingEngine())
    for command in setup:
        step(command)
    gc.collect()
    if request["gc_freeze"]:
        gc.freeze()
    gc.set_threshold(request["gc_threshold"])
    if not request["gc_enabled"]:
        gc.disable()
    clock = time.perf_counter_ns
    latencies = [0] * len(commands)
    outputs: list[list[Any]] = [[] for _ in commands]
    cpu_started = time.process_time()
    started = clock()
    for i, command in enumerate(commands):
        before = clock()
        outputs[i] = step(command)
        latencies[i] = clock() - before
    seconds = (clock() - started) / 1e9
    cpu_seconds = time.process_time() - cpu_started
    gc.enable()
    traded = sum(e.qty for events in outputs for e in events if type(e) is Trade)
    result = {"seconds": seconds, "cpu_seconds": cpu_seconds, "latencies_ns": latencies}
    json.dump(result | {"traded_qty": traded}, sys.stdout)


if __name__ == "__main__":
    main()
