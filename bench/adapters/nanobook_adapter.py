"""`nanobook` (PyPI, a Rust book behind PyO3) behind the adapter interface.

Runs in this process. nanobook numbers its own orders, so the driver maps our order ids to
its ids as it goes (a dict write per place, read per cancel). A price move is cancel + new
(see `bench.adapters.thirdparty`): `cancel` reports the remaining qty, `submit_limit` places
it at the new price, as `nanobook.Exchange.modify` does; but nanobook 0.19.2 loses some of
those cancels (see LOST_CANCEL), so a workload with price moves is skipped with that reason. Prices
and quantities are passed as the venue's integer ticks and units. Traded quantity is the
sum of `filled_quantity` of every submit, counted after the clock stops.
"""

import importlib.util
from collections.abc import Sequence
from typing import Any

from bench.adapters.base import AdapterResult, time_each
from bench.adapters.thirdparty import CANCEL, MOVE, PLACE, Unsupported, plain_commands
from bench.workloads import Workload

PACKAGE = "nanobook"
# Seen with nanobook 0.19.2 on `mixed` (seed 1, 2,000 ops, timed command 1,222): after a
# price move, `cancel` (and `modify`) of a resting order reports success and the order
# reads canceled, yet it stays on its level in `full_book` and in matching, and a later ioc
# never returns. Workloads with price moves are therefore not run on it.
LOST_CANCEL = "nanobook 0.19.2 leaves some canceled orders on the book (then an ioc hangs)"


class NanobookAdapter:
    """`nanobook.Exchange`, one instrument, fed plain commands."""

    name = PACKAGE

    def __init__(self) -> None:
        self.exchange: Any = None
        self.ids: dict[int, int] = {}  # our order id -> nanobook's

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec(PACKAGE) is None:
            return False, f"not installed (PyPI `{PACKAGE}`, in the project's bench extra)"
        return True, ""

    def prepare(self, workload: Workload) -> Sequence[object]:
        import nanobook

        self.exchange = nanobook.Exchange()
        self.ids = {}
        setup, plain = plain_commands(workload.setup, workload.commands)
        if any(command[0] == MOVE for command in plain):
            raise Unsupported(LOST_CANCEL)
        sides: dict[int, str] = {}
        converted = [_convert(command, sides) for command in setup + plain]
        for command in converted[: len(setup)]:
            self.apply(command)
        return converted[len(setup) :]

    def apply(self, command: tuple[Any, ...]) -> object:
        """One converted command; returns nanobook's result (a submit's carries its fills)."""
        op = command[0]
        ids = self.ids
        if op == PLACE:
            _, order_id, side, price, qty, tif = command
            result = self.exchange.submit_limit(side, price, qty, tif)
            ids[order_id] = result.order_id
            return result
        if op == CANCEL:
            return self.exchange.cancel(ids[command[1]])
        _, order_id, side, price = command
        canceled = self.exchange.cancel(ids[order_id])
        if not canceled.success:
            return canceled
        result = self.exchange.submit_limit(side, price, canceled.cancelled_quantity, "gtc")
        ids[order_id] = result.order_id
        return result

    def run(self, commands: Sequence[object]) -> AdapterResult:
        assert self.exchange is not None, "prepare() first"
        seconds, latencies, outputs, cpu_seconds = time_each(self.apply, commands)
        self.exchange = None
        traded = sum(getattr(result, "filled_quantity", 0) for result in outputs)
        return AdapterResult(seconds, latencies, traded, cpu_seconds)


def _convert(plain: tuple[int, ...], sides: dict[int, str]) -> tuple[Any, ...]:
    """nanobook's arguments for a plain command; `sides` remembers each order's side."""
    if plain[0] == PLACE:
        _, order_id, _account, buy, price, qty, ioc = plain
        sides[order_id] = side = "buy" if buy else "sell"
        return (PLACE, order_id, side, price, qty, "ioc" if ioc else "gtc")
    if plain[0] == CANCEL:
        return (CANCEL, plain[1])
    _, order_id, _account, price = plain
    return (MOVE, order_id, sides[order_id], price)
