"""Third-party matching engines from PyPI: the workload in a plain form they all can run.

Owns the translation every third-party driver shares. `plain_commands` turns engine
commands into tuples of ints, numbering orders as the venue does (1 per accepted order,
setup included), so a driver can name an order by our id. The workloads send gtc and ioc
limits, cancels and price moves; a price move is translated faithfully as cancel + new
(what both peers offer: `nanobook.modify` is itself cancel + new, `matching-engine` has
no amend): the new order carries the remaining qty at the new price and loses time
priority, as our amend does. An amend of qty, post-only or other order types raise
`Unsupported`, which the comparison reports as a skip with its reason.
"""

from bench.adapters.base import EngineAdapter
from engine.commands import AmendOrder, CancelOrder, Command, ListInstrument, PlaceOrder
from engine.enums import OrderType, Side, TimeInForce

# Plain command forms: (PLACE, order_id, account, buy, price, qty, ioc),
# (CANCEL, order_id, account) and (MOVE, order_id, account, price).
PLACE = 0
CANCEL = 1
MOVE = 2


class Unsupported(ValueError):
    """A workload this engine cannot run faithfully; the message says why."""


class PlainTranslator:
    """Numbers orders as the venue does while translating, setup and timed part alike."""

    def __init__(self) -> None:
        self.last_order_id = 0

    def translate(self, command: Command) -> tuple[int, ...] | None:
        """The plain form of `command`; None for what a single book ignores."""
        if type(command) is PlaceOrder:
            if command.order_type is not OrderType.LIMIT or command.post_only:
                raise Unsupported(f"only plain limit orders translate: {command}")
            if command.tif not in (TimeInForce.GTC, TimeInForce.IOC):
                raise Unsupported(f"only gtc and ioc translate: {command}")
            self.last_order_id += 1
            buy = int(command.side is Side.BUY)
            ioc = int(command.tif is TimeInForce.IOC)
            return (
                PLACE,
                self.last_order_id,
                command.account,
                buy,
                command.price,
                command.qty,
                ioc,
            )
        if type(command) is CancelOrder:
            if command.cl_ord_id is not None:
                raise Unsupported(f"cancel by cl_ord_id does not translate: {command}")
            return (CANCEL, command.order_id, command.account)
        if type(command) is AmendOrder:
            if command.qty or not command.price or command.cl_ord_id is not None:
                raise Unsupported("an amend of qty has no faithful cancel + new translation")
            return (MOVE, command.order_id, command.account, command.price)
        if type(command) is ListInstrument:
            return None
        raise Unsupported(f"{type(command).__name__} does not translate to a single book")


def plain_commands(
    setup: list[Command], commands: list[Command]
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """The setup and the timed commands in plain form, order ids numbered across both."""
    translator = PlainTranslator()
    plain_setup = [p for p in map(translator.translate, setup) if p is not None]
    plain = [p for p in map(translator.translate, commands) if p is not None]
    return plain_setup, plain


def candidates() -> list[EngineAdapter]:
    """The third-party adapters, in table order (imported here: they import this module)."""
    from bench.adapters.matching_engine_adapter import MatchingEngineAdapter
    from bench.adapters.nanobook_adapter import NanobookAdapter

    return [NanobookAdapter(), MatchingEngineAdapter()]
