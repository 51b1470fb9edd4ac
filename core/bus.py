"""The bus: the one seam between the gateway role and the core role.

A gateway submits commands (each with its origin, an opaque object the outcome carries
back), asks for barriers (an origin released behind every command submitted before it),
and is told of each durable batch of outcomes through its `CoreListener`. It reads state
through one `ReadSide`, never by reaching into the engine.

`EmbeddedBus` is today's single process: its methods are the sequencer's own bound
methods, so a command costs no extra call, copy or hop. `core.nats_bus.NatsBus` is the
cluster's: `submit` sends the command to the active core over NATS and keeps the origin
locally; the core appends it to the JetStream stream (the journal); a replica of the venue on
the gateway executes every record of the stream and tells the listener as the embedded core
does, answering a request once the record with its origin came back (docs/cluster.md).
"""

from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from core.sequencer import Executed
from engine.book import Order
from engine.commands import Command
from engine.market import Market
from engine.reasons import ErrorCode
from engine.venue import Venue
from settlement.ledger import Ledger

if TYPE_CHECKING:
    from core.venue_core import VenueCore


class CoreListener(Protocol):
    """What the core tells the gateway side (in-process today; from subjects later)."""

    def executed(self, executed: Executed) -> None:
        """A command just executed (not yet durable): its pushes get their seqs now."""

    def released(self, batch: list[Executed]) -> None:
        """Every command in `batch` is durable: answer, push, publish."""

    def replayed(self, batch: list[Executed]) -> None:
        """Commands replayed from the journal at start: rebuild derived history."""

    def gateway_image(self, later: bool = False) -> dict[str, Any]:
        """The gateway's part of a snapshot (private streams, exec ids, order history).
        `later`: for a write, its long parts may be `engine.snapshot.Later` ones."""

    def restore_gateway(self, image: dict[str, Any]) -> None:
        """Take the gateway's part of a snapshot back (the venue is restored already)."""


class ReadSide:
    """The state the gateway reads: balances, orders, instruments, books.

    Today the core's live engine (read between commands on the one event loop, so always
    consistent); in the cluster, a replica the gateway keeps from the released outcomes.
    """

    def __init__(self, core: "VenueCore") -> None:
        self._core = core

    @property
    def venue(self) -> Venue:
        return self._core.venue

    @property
    def ledger(self) -> Ledger:
        return self._core.ledger

    @property
    def markets(self) -> dict[str, Market]:
        return self._core.venue.markets

    @property
    def orders(self) -> dict[int, Order]:
        return self._core.venue.orders

    def open_orders(self, account: int) -> list[Order]:
        return self._core.venue.open_orders(account)

    def find_order(self, account: int, order_id: int, cl_ord_id: str | None) -> Order | None:
        return self._core.venue.find_order(account, order_id, cl_ord_id)

    def missing_order_reason(
        self, account: int, order_id: int, cl_ord_id: str | None
    ) -> tuple[ErrorCode, str]:
        return self._core.venue.missing_order_reason(account, order_id, cl_ord_id)

    def is_participant(self, account: int) -> bool:
        return account in self._core.ledger.participants


class Bus(Protocol):
    """What the gateway's parts use of a bus: `EmbeddedBus`, or `core.nats_bus.NatsBus`."""

    core: Any  # what the server starts and stops: a `VenueCore`, or a gateway's replica
    reads: ReadSide

    @property
    def submit(self) -> Callable[[Command, Any], Executed]:
        """(command, origin) -> its outcome (over NATS a stub: the outcome comes later)."""

    @property
    def barrier(self) -> Callable[..., None]:
        """(origin, events=None): released behind every command submitted before it."""

    @property
    def drain(self) -> Callable[[], Coroutine[Any, Any, bool]]:
        """() -> True once every command submitted so far has come back durable (over NATS
        bounded: False when some had not)."""

    @property
    def owed(self) -> Callable[[], list[Any]]:
        """() -> the origins of the commands (and barriers behind them) sent and not yet come
        back, in submit order (embedded: none; a command has run when `submit` returns)."""

    @property
    def epoch_of(self) -> Callable[[int], int]: ...

    @property
    def epoch(self) -> int: ...

    def on_fatal(self, failure: BaseException | None) -> None: ...


class EmbeddedBus:
    """The bus inside one process: calls straight into the core's sequencer."""

    submit: Callable[[Command, Any], Executed]  # (command, origin) -> its outcome
    submit_all: Callable[[Iterable[Command], Any], None]  # (commands, origin): one call
    barrier: Callable[..., None]  # (origin, events=None): released behind every command
    drain: Callable[[], Coroutine[Any, Any, bool]]
    epoch_of: Callable[[int], int]

    def __init__(self, core: "VenueCore") -> None:
        self.core = core
        sequencer = core.sequencer  # never replaced: its bound methods are the bus
        self.submit = sequencer.submit
        self.submit_all = sequencer.submit_all
        self.barrier = sequencer.barrier
        self.drain = sequencer.drain
        self.epoch_of = core.epoch_of
        self.reads = ReadSide(core)

    @property
    def epoch(self) -> int:
        """This start's epoch (µs): private and public seqs start over in each."""
        return self.core.epoch

    def owed(self) -> list[Any]:
        return []  # the sequencer answers what it ran in the same turn

    def on_fatal(self, failure: BaseException | None) -> None:
        """A failure the venue cannot go on after (a dead task, lost durability)."""
        self.core.sequencer.on_fatal(failure)
