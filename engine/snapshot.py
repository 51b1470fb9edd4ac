"""Images of the whole venue state, for snapshots: capture a `Venue`, restore an equal one.

Owns the shape of a venue image: the config, every market (spec, status, reference price,
trade ids, maturity) with its resting orders in priority order, the closed-order memory, the
id counters and the clock, the armed dead-man's switches, the operators' remembered
`cl_op_id`s (the newest whole, the older compacted), the `once` places (`engine.once`), and
the ledger's image when the venue clears. A restored venue has the same `state_hash()` and,
given the same commands, produces the same events. Pure: the bytes are the core's to write
(`core/snapshots.py`).
"""

import msgspec

from engine.book import Order
from engine.enums import InstrumentStatus
from engine.instrument import InstrumentSpec
from engine.market import Market
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


def capture(venue: Venue) -> VenueImage:
    """Everything needed to rebuild `venue` exactly."""
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
    closed = list(venue.closed_orders.items())
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
        venue.once_placed.image(),
    )


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
    return msgspec.msgpack.encode(image)


def decode(payload: bytes) -> VenueImage:
    return msgspec.msgpack.decode(payload, type=VenueImage)
