"""Images of the whole venue state, for snapshots: capture a `Venue`, restore an equal one.

Owns the shape of a venue image: the config, every market (spec, status, reference price,
trade ids, maturity) with its resting orders in priority order, the closed-order memory, the
id counters and the clock, the armed dead-man's switches, the operators' remembered
`cl_op_id`s (the newest whole, the older compacted), the `once` places (`engine.once`), and
the ledger's image when the venue clears. A restored venue has the same `state_hash()` and,
given the same commands, produces the same events. Pure: the bytes are the core's to write
(`core/snapshots.py`). A capture for a write (`later`) holds its long parts as `Later` ones:
references on the event loop, made into their values (the same bytes) when encoded.
"""

from collections.abc import Callable
from functools import partial
from itertools import chain
from typing import Any

import msgspec

from engine.book import Order
from engine.closed import slices_of
from engine.enums import InstrumentStatus
from engine.instrument import InstrumentSpec
from engine.market import Market
from engine.once import Entry
from engine.operations import Operation, OperationArchive
from engine.venue import Venue, VenueConfig
from settlement.ledger import Ledger, LedgerImage

IMAGE_VERSION = 1


class MarketImage(msgspec.Struct, frozen=True, gc=False):
    spec: InstrumentSpec
    status: InstrumentStatus
    reference_price: int
    last_trade_id: int
    matured: bool
    orders: list[Order]  # bids then asks, each in priority order


# `omit_defaults`: an image without an armed switch is written as before it had them, and
# an image written before reads as one without.
class VenueImage(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    version: int
    config: VenueConfig
    ts_us: int
    last_order_id: int
    markets: list[MarketImage]
    closed_orders: list[tuple[int, int]]  # (order id, account), oldest first
    ledger: LedgerImage | None
    dead_man_deadlines: list[
        tuple[int, int]
    ] = []  # armed dead-man's switches: (account, deadline_us)
    operations: list[Operation] = []  # operator commands done under a cl_op_id, oldest first
    # the older ones, compacted (absent from images before it: they held every one whole)
    operations_archive: OperationArchive | None = None
    # the `once` places remembered (`engine.once`): (ts_us, account, cl_ord_id, order id),
    # oldest first; absent while there are none, as from images before it
    once_placed: list[tuple[int, int, str, int]] = []


class Later:
    """A part of an image taken as references that no later change touches, made into its
    value only when it is encoded (`made`, msgspec's `enc_hook`): what is one step per item
    (a million closed order ids made into pairs) is done by the snapshot's writer thread,
    off the event loop, with the same bytes as the value taken at once."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def made(value: Any) -> Any:
    """msgspec's `enc_hook` for images with `Later` parts: each encoded as what it makes."""
    if type(value) is Later:
        return value.make()
    # msgspec's own refusal, as an encode without the hook raises it
    raise TypeError(f"Encoding objects of type {type(value).__name__} is unsupported")


def capture(venue: Venue, later: bool = False) -> VenueImage:
    """Everything needed to rebuild `venue` exactly. `later`: the closed orders and the
    `once` places as `Later` parts (encoded with `made` only: the core's snapshots), so that
    the capture is a few C calls for them, not a step per item, on the event loop."""
    markets = [
        MarketImage(
            market.spec,
            market.status,
            market.reference_price,
            market.last_trade_id,
            market.matured,
            [msgspec.structs.replace(order) for order in market.book.iter_orders()],
        )
        for market in venue.markets.values()
    ]
    ledger = venue.ledger.image() if venue.ledger is not None else None
    # (Any: a `Later` part stands for the list it makes when encoded)
    closed: Any
    once_placed: Any
    if later:
        closed = Later(partial(_closed_orders_encoded, *venue.closed_orders.frozen()))
        once_placed = venue.once_placed.image()  # (empty: left out of the image, as before)
        if venue.once_placed:
            once_placed = Later(partial(_joined, venue.once_placed.image_pieces()))
    else:
        closed = list(venue.closed_orders.items())
        once_placed = venue.once_placed.image()
    return VenueImage(
        IMAGE_VERSION,
        venue.config,
        venue.ts_us,
        venue.last_order_id,
        markets,
        closed,
        ledger,
        sorted(venue.dead_man_deadlines.items()),
        venue.operations.image(),
        venue.operations.archive.copy() if venue.operations.archive.count else None,
        once_placed,
    )


def _closed_orders_encoded(chunks: list[dict[int, int]], skip: int) -> msgspec.Raw:
    """The msgpack of the closed orders' (order id, account) pairs, as `capture` lists them
    at once: an array of them, made a chunk per msgspec call (each well under a millisecond,
    so the event loop has its turns between them)."""
    parts: list[memoryview] = []
    count = 0
    for pairs in slices_of(chunks, skip):
        items = list(pairs)
        count += len(items)
        parts.append(memoryview(_ENCODER.encode(items))[len(_array_header(len(items))) :])
    return msgspec.Raw(b"".join([_array_header(count), *parts]))


def _joined(pieces: list[list[Entry]]) -> list[Entry]:
    return list(chain.from_iterable(pieces))


def _array_header(length: int) -> bytes:
    """msgpack's header of an array of `length` items: fixarray, array 16 or array 32."""
    if length < 16:
        return bytes((0x90 | length,))
    if length < 2**16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


_ENCODER = msgspec.msgpack.Encoder()


def restore(image: VenueImage) -> Venue:
    """A venue equal to the one `image` was captured from."""
    assert image.version == IMAGE_VERSION, f"venue image version {image.version} is unknown"
    ledger = Ledger.from_image(image.ledger) if image.ledger is not None else None
    venue = Venue(image.config, ledger)
    venue.ts_us = image.ts_us
    venue.last_order_id = image.last_order_id
    for market_image in image.markets:
        _restore_market(venue, market_image)
    orders = [msgspec.structs.replace(o) for m in image.markets for o in m.orders]
    venue.adopt_resting(orders)
    for order_id, account in image.closed_orders:
        venue.closed_orders.add(order_id, account)
    venue.adopt_dead_man_deadlines(image.dead_man_deadlines)
    venue.operations.adopt(image.operations, image.operations_archive)
    venue.once_placed.adopt(image.once_placed)
    venue.check_invariants()
    return venue


def _restore_market(venue: Venue, image: MarketImage) -> None:
    market = venue.markets[image.spec.symbol] = Market(image.spec)
    market.status = image.status
    market.set_reference_price(image.reference_price)
    market.last_trade_id = image.last_trade_id
    market.matured = image.matured
    if image.matured:
        venue.matured_assets.add(image.spec.base)
    if venue.clearing is not None:
        market.terms = venue.clearing.terms(image.spec)
    if image.spec.maturity_us and not image.matured:
        venue.maturities.append((image.spec.maturity_us, image.spec.symbol))
        venue.maturities.sort()
        venue.note_due(image.spec.maturity_us)


def encode(image: VenueImage) -> bytes:
    return msgspec.msgpack.encode(image, enc_hook=made)


def decode(payload: bytes) -> VenueImage:
    return msgspec.msgpack.decode(payload, type=VenueImage)
