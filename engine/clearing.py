"""Clearing: what stands between matching and the ledger: listing, eligibility and holds.

Owns the rules that make every match settleable: which instruments the ledger can clear, who
may trade one (KYC approved, outside its excluded jurisdictions), what an order holds while
open (a buy: its worst-case cost and fee in the quote asset; a sell: its quantity of the base
asset), how an amend moves that hold, and the release of whatever an order still holds when
it closes. Each trade's delivery-versus-payment chain is `engine.dvp`'s, which `Clearing`
inherits. The arithmetic is `settlement.dvp`'s; the balances are `settlement.ledger`'s, and
each market remembers its traders' (base, quote) pairs of them (`Market.positions`).
Invariant: an order's hold never passes what its balance holds; a hold is taken only when
available (checked by the caller beforehand).
"""

from collections.abc import Iterable

from engine.book import Order
from engine.dvp import DeliveryVersusPayment
from engine.enums import InstrumentKind, OrderType, Side
from engine.events import BalanceChanged, Event
from engine.instrument import InstrumentSpec
from engine.market import Market
from settlement.dvp import CashTerms
from settlement.ledger import Ledger

BUY = Side.BUY


class Clearing(DeliveryVersusPayment):
    """The venue's clearing: listing rules, eligibility, holds and (inherited) DvP.

    One instance per venue with a ledger. The venue's hot path reads `balances` and
    `participants` directly and writes out the hold of a new order (`Venue._place`), the
    release of a canceled one (`Venue._cancel`) and an amend's rehold: those copies follow
    the rules stated here, which the other paths call.
    """

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger)
        # The ledger's own dict (it is never replaced): one attribute load less on every
        # hold and release, and the venue's place looks a balance up in it directly.
        self.balances = ledger.balances
        self.participants = ledger.participants  # the same for the venue's eligibility check

    # ----------------------------------------------------------------- listing

    def listing_problem(self, spec: InstrumentSpec) -> str | None:
        """Why the ledger cannot clear this instrument, or None."""
        assets = self.ledger.assets
        base, quote = assets.get(spec.base), assets.get(spec.quote)
        if base is None or quote is None:
            return f"list the assets {spec.base} and {spec.quote} first"
        if base.scale != spec.qty_decimals or quote.scale != spec.quote_decimals:
            return "qty_decimals and quote_decimals must equal the assets' scales"
        if spec.kind is InstrumentKind.TBILL and spec.quote_decimals < spec.qty_decimals:
            return "a T-bill's face units must convert exactly into cash units"
        return None

    @staticmethod
    def shares_a_bill(spec: InstrumentSpec, listed: "Iterable[InstrumentSpec]") -> str | None:
        """A T-bill token trades on one instrument only: its maturity redeems every holder,
        which must not leave orders on another instrument holding the burned tokens."""
        for other in listed:
            bills = {s.base for s in (spec, other) if s.kind is InstrumentKind.TBILL}
            shared = bills & {spec.base, spec.quote} & {other.base, other.quote}
            if shared:
                token = min(shared)
                if spec.kind is InstrumentKind.TBILL and spec.base == token:  # the new bill's
                    return (
                        f"{token} already trades on {other.symbol}: a T-bill's token trades on"
                        f" its own instrument only (give {spec.symbol} a token of its own)"
                    )
                return f"{token} is the bill token of {other.symbol}: it trades there only"
        return None

    @staticmethod
    def terms(spec: InstrumentSpec) -> CashTerms:
        num, den = spec.notional_fraction
        return CashTerms(num, den, spec.maker_fee_bps, spec.taker_fee_bps)

    def eligible(self, account: int, spec: InstrumentSpec) -> bool:
        """KYC-approved participants outside the instrument's excluded jurisdictions."""
        participant = self.ledger.participants.get(account)
        return (
            participant is not None
            and participant.kyc_approved
            and participant.jurisdiction not in spec.excluded_jurisdictions
        )

    # ----------------------------------------------------------------- holds

    @staticmethod
    def place_hold(
        market: Market, side: Side, order_type: OrderType, price: int, qty: int, quote_qty: int
    ) -> int:
        """What a new order must hold: cash for a buy (at its limit or the band), else base."""
        if side is not BUY:
            return qty
        terms = market.terms
        assert terms is not None, "clearing a market without cash terms"
        if quote_qty:
            return terms.quote_hold(quote_qty)
        limit = price if order_type is OrderType.LIMIT else market.band_high
        return terms.buy_hold(limit, qty)

    def available(self, account: int, asset: str) -> int:
        balance = self.ledger.balances.get((account, asset))
        return balance.total - balance.held if balance is not None else 0

    def buy_hold_for(self, order: Order, market: Market, price: int, leaves: int) -> int:
        """The worst case a buy must still hold with `leaves` left at `price`."""
        terms = market.terms
        assert terms is not None
        value = order.filled_value
        return terms.buy_hold_after_fills(value, order.fee_exact, order.fees_paid, price * leaves)

    def rehold(
        self, order: Order, market: Market, new_hold: int, ts: int, events: list[Event]
    ) -> None:
        """Move an open order's hold to `new_hold` (affordability checked beforehand).

        `Ledger.hold` and `Ledger.release` inline, one lookup: every amend of a buy.
        """
        delta = new_hold - order.hold
        if not delta:
            return
        account = order.account
        asset = market.spec.quote if order.side is BUY else market.spec.base
        balance = self.ledger.balances.get((account, asset))
        assert balance is not None, f"{order} holds from a balance that does not exist"
        if delta > 0:
            assert balance.total - balance.held >= delta, f"{order} cannot hold more"
        else:
            assert -delta <= balance.held, f"release {-delta} of {balance.held} held"
        balance.held += delta
        order.hold = new_hold
        events.append(BalanceChanged(ts, account, asset, balance.total, balance.held))

    def release(self, order: Order, market: Market, ts: int, events: list[Event]) -> None:
        """Give back all an order still holds: it has closed.

        `rehold` to zero with `Ledger.release` inline: one lookup, on every closing order.
        """
        hold = order.hold
        if not hold:
            return
        spec = market.spec
        account = order.account
        asset = spec.quote if order.side is BUY else spec.base
        position = market.positions.get(account)  # remembered once the account traded here
        if position is None:
            balance = self.balances[(account, asset)]
        else:
            balance = position[1] if order.side is BUY else position[0]
        assert 0 < hold <= balance.held, f"release {hold} of {balance.held} held"
        balance.held -= hold
        order.hold = 0
        events.append(BalanceChanged(ts, account, asset, balance.total, balance.held))


def balance_changed(ledger: Ledger, account: int, asset: str, ts: int) -> BalanceChanged:
    """The event reporting an account's balance in one asset as it is now."""
    balance = ledger.balance(account, asset)
    return BalanceChanged(ts, account, asset, balance.total, balance.held)
