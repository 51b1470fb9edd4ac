"""Delivery versus payment: the engine's booking of each trade's settlement chain.

Owns the chain of one trade, booked at the match (T+0): the security seller to buyer, the cash
buyer to seller, the rounding difference to or from the rounding account, each party's fee to
fee income, all legs in one chain and one `TradeSettled` event; and what each fill spends of
both parties' holds and fee totals. The arithmetic's rules are `settlement.dvp`'s (written out
here for speed, the differential test holding both to a reference ledger); the balances are
`settlement.ledger`'s. `engine.clearing.Clearing` inherits this class: one object on the
matching path, so booking a trade costs no attribute hop or call more than before the split.
Invariants: a chain spends no more than its orders held, a seller's fee never passes that
fill's proceeds, and every asset still sums to zero.
"""

from engine.book import Order
from engine.enums import Side
from engine.events import Event, TradeSettled
from engine.market import Market
from settlement.dvp import BPS
from settlement.ledger import Balance, Ledger, Leg
from settlement.transfers import FEE_INCOME, ROUNDING, Transfer, TransferKind

BUY = Side.BUY
DELIVERY = TransferKind.DELIVERY
PAYMENT = TransferKind.PAYMENT
FEE = TransferKind.FEE
ROUNDING_KIND = TransferKind.ROUNDING


class DeliveryVersusPayment:
    """Books a trade's DvP chain against the parties' remembered positions (`settle`).

    Kept apart from `Clearing`'s holds for its length: `settle` is `Ledger.settle` and the
    `CashTerms` arithmetic written out, one frame per trade; its rare cases (a self-trade, a
    balance still to be made) go through the ledger's generic path (`_settle_generic`).
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def settle(
        self,
        market: Market,
        maker: Order,
        maker_leaves: int,
        maker_value: int,
        taker: Order,
        taker_done: bool,
        taker_value: int,
        price: int,
        qty: int,
        trade_id: int,
        ts: int,
        events: list[Event],
    ) -> None:
        """Book the DvP chain of one trade and report it: the fill's fees and cash, what it
        spends of both holds and the chain's legs, in one frame.

        Matching gives each party's value with this fill counted (`maker_value`,
        `taker_value`), whether it stores it (an open maker's) or not (a filled maker's;
        the taker's, stored once after matching), and says which party this fill closes
        (`maker_leaves` zero, `taker_done`): nothing reads a closed order's fee totals
        again, so they are not stored (a store on a msgspec struct is never specialised,
        ~280 instructions each). Its hold is: the release reads it.
        """
        terms = market.terms
        assert terms is not None, "settling a market without cash terms"
        buyer_open: int  # true while the order stays open: a bool or a maker's leaves
        seller_open: int
        if taker.side is BUY:
            buyer, seller = taker, maker
            bought_value, sold_value = taker_value, maker_value
            buyer_bps, seller_bps = terms.taker_fee_bps, terms.maker_fee_bps
            buyer_open, seller_open = not taker_done, maker_leaves
        else:
            buyer, seller = maker, taker
            bought_value, sold_value = maker_value, taker_value
            buyer_bps, seller_bps = terms.maker_fee_bps, terms.taker_fee_bps
            buyer_open, seller_open = maker_leaves, not taker_done
        # `CashTerms` arithmetic written out (paid_total, received_total, fee_exact,
        # fees_total): eight method calls per trade are a third of this function's cost.
        num = terms.num
        den = terms.den
        # pay = ceil(bought / den) - ceil((bought - exact) / den) and receive = floor(sold /
        # den) - floor((sold - exact) / den), where `exact` is this fill's cash and bought and
        # sold are the parties' cash so far, this fill included, all in 1/den quote units: the
        # fill's whole units, plus one where its fraction `part` carries a party's running
        # total over a whole unit. That is one divmod and a remainder per party, where the
        # floors were four two-digit divisions.
        if num == 1:  # the usual instrument: nothing times one (a two-digit total, at that)
            exact = price * qty
            bought_part = bought_value % den
            sold_part = sold_value % den
        else:
            # Price times num first: both products then stay in CPython's one-digit fast path
            # as long as they can (two digits times num is a general product).
            exact = price * num * qty
            bought_part = bought_value * num % den
            sold_part = sold_value * num % den
        whole, part = divmod(exact, den)
        pay = whole + 1 if bought_part and bought_part <= part else whole
        receive = whole + 1 if sold_part < part else whole
        # Fees so far rounded up, ceil(fee_exact / (den x BPS)), as two floor divisions by
        # one-digit divisors (a division by den x BPS = 10^10 takes CPython's slow long path);
        # this fill's fee is what that total adds to the fees paid, which become the total.
        fee_up = terms.fee_up
        fee_exact = buyer.fee_exact + exact * buyer_bps
        fees_total = (fee_exact + fee_up) // den // BPS
        buyer_fee = fees_total - buyer.fees_paid
        if buyer_open:
            buyer.fee_exact = fee_exact
            buyer.fees_paid = fees_total
        fee_exact = seller.fee_exact + exact * seller_bps
        fees_total = (fee_exact + fee_up) // den // BPS
        seller_fee = fees_total - seller.fees_paid
        if seller_fee > receive:  # never more than this fill's proceeds: it holds no cash
            seller_fee = receive
            fees_total = seller.fees_paid + receive
        if seller_open:
            seller.fee_exact = fee_exact
            seller.fees_paid = fees_total
        spent = pay + buyer_fee  # what the buyer's hold spends: the cash, rounding and fee
        buyer.hold = held = buyer.hold - spent
        assert held >= 0, f"{buyer} spent more than it held"
        seller.hold -= qty

        spec = market.spec
        base = spec.base
        quote = spec.quote
        buyer_account = buyer.account
        seller_account = seller.account
        # Subscripts in a `try`, not `get` (see `Venue._place`): both parties' positions are
        # remembered from their first orders here (unless one lacked an asset then), and the
        # venue's rounding and fee balances from the instrument's first trade.
        positions = market.positions
        bought: tuple[Balance, Balance] | None
        sold_out: tuple[Balance, Balance] | None
        try:
            bought = positions[buyer_account]
            sold_out = positions[seller_account]
        except KeyError:
            bought = positions.get(buyer_account) or self.position(market, buyer_account)
            sold_out = positions.get(seller_account) or self.position(market, seller_account)
        ledger = self.ledger
        # The venue's balances this trade's legs touch must be made (rounding, fee income):
        # a quote asset's fills may all be worth whole cash units, and then its rounding
        # balance is never made.
        try:
            rounding, fees = ledger.venue_cash[quote]
        except KeyError:
            rounding, fees = ledger.find_venue_cash(quote)
        if (
            bought is None
            or sold_out is None
            or buyer_account == seller_account
            or (rounding is None and pay != receive)
            or (fees is None and (buyer_fee or seller_fee))
        ):  # a self-trade, or a balance still to be made
            return self._settle_generic(
                market,
                buyer_account,
                seller_account,
                qty,
                pay,
                receive,
                buyer_fee,
                seller_fee,
                trade_id,
                ts,
                events,
            )
        # The chain booked here, `Ledger.settle` written out for a trade's fixed legs: no
        # call of a dozen arguments per trade (~1,400 instructions, callgrind). The parties'
        # balances are their remembered positions (base, quote), each moved once by its net
        # amount rather than once per leg: the buyer's cash pays the agreed cash, the rounding
        # difference and its fee, which is what its hold spends; the seller's cash gets what
        # it receives less its fee. Total and hold drop together, so what is available stays
        # what it was and no balance can be overdrawn. The legs, in order: the security seller
        # to buyer, the cash both agree on (min of `pay` and `receive`) buyer to seller, the
        # rounding difference, the buyer's fee, the seller's fee (`_dvp_legs`, which the
        # generic path books; the differential test holds both to a reference ledger).
        buyer_base, buyer_cash = bought
        seller_base, seller_cash = sold_out
        buyer_cash.held -= spent
        seller_base.held -= qty
        assert buyer_cash.held >= 0 <= seller_base.held, "a trade spent more than its orders held"
        assert 0 <= seller_fee <= receive, f"a seller's fee {seller_fee} beyond its {receive}"
        buyer_cash.total -= spent
        seller_base.total -= qty
        buyer_base.total += qty
        seller_cash.total += receive - seller_fee
        ledger.last_chain_id = chain_id = ledger.last_chain_id + 1
        transfer_id = ledger.last_transfer_id + 1
        booked = [
            Transfer(transfer_id, chain_id, seller_account, buyer_account, base, qty, DELIVERY, ts)
        ]
        direct = pay if pay < receive else receive
        if direct:
            transfer_id += 1
            booked.append(
                Transfer(
                    transfer_id, chain_id, buyer_account, seller_account, quote, direct, PAYMENT, ts
                )
            )
        residual = pay - receive  # what the buyer pays beyond what the seller receives
        if residual:
            assert rounding is not None, "a rounding leg without the venue's rounding balance"
            transfer_id += 1
            rounding.total += residual
            if residual > 0:
                leg = Transfer(
                    transfer_id,
                    chain_id,
                    buyer_account,
                    ROUNDING,
                    quote,
                    residual,
                    ROUNDING_KIND,
                    ts,
                )
            else:
                leg = Transfer(
                    transfer_id,
                    chain_id,
                    ROUNDING,
                    seller_account,
                    quote,
                    -residual,
                    ROUNDING_KIND,
                    ts,
                )
            booked.append(leg)
        if buyer_fee:
            transfer_id += 1
            booked.append(
                Transfer(
                    transfer_id, chain_id, buyer_account, FEE_INCOME, quote, buyer_fee, FEE, ts
                )
            )
        if seller_fee:
            transfer_id += 1
            booked.append(
                Transfer(
                    transfer_id, chain_id, seller_account, FEE_INCOME, quote, seller_fee, FEE, ts
                )
            )
        if fees is not None:  # else there is no fee to book
            fees.total += buyer_fee + seller_fee
        ledger.last_transfer_id = transfer_id
        transfers = tuple(booked)
        ledger.undrained.extend(transfers)
        # The settlement with every balance the chain touched as it is now: one event where
        # a `BalanceChanged` each made five (each struct costs ~850 instructions, callgrind).
        events.append(
            TradeSettled(
                ts,
                market.symbol,
                trade_id,
                chain_id,
                transfers,
                buyer_account,
                seller_account,
                base,
                quote,
                buyer_base.total,
                buyer_base.held,
                buyer_cash.total,
                buyer_cash.held,
                seller_base.total,
                seller_base.held,
                seller_cash.total,
                seller_cash.held,
            )
        )
        return None

    def position(self, market: Market, account: int) -> tuple[Balance, Balance] | None:
        """The account's (base, quote) balances in `market`, remembered once both exist."""
        spec = market.spec
        position = self.ledger.position(account, spec.base, spec.quote)
        if position is not None:
            market.positions[account] = position
        return position

    def _settle_generic(
        self,
        market: Market,
        buyer_account: int,
        seller_account: int,
        qty: int,
        pay: int,
        receive: int,
        buyer_fee: int,
        seller_fee: int,
        trade_id: int,
        ts: int,
        events: list[Event],
    ) -> None:
        """The rare trade `settle` leaves to the generic path: a self-trade (stp
        none: buyer and seller are one account, `TradeSettled.balances` gives its two) or
        one with a balance still to be made (`settle` makes it in leg order)."""
        spec = market.spec
        base = spec.base
        quote = spec.quote
        ledger = self.ledger
        legs = _dvp_legs(
            buyer_account,
            seller_account,
            base,
            quote,
            qty,
            pay,
            receive,
            buyer_fee,
            seller_fee,
        )
        spend = ((buyer_account, quote, pay + buyer_fee), (seller_account, base, qty))
        booked = tuple(ledger.settle(legs, ts, spend))
        # Every balance the chain touched, as it is now (`ledger.balance` makes a missing one:
        # the legs made all four, a self-trade's two).
        buyer_base = ledger.balance(buyer_account, base)
        buyer_cash = ledger.balance(buyer_account, quote)
        seller_base = ledger.balance(seller_account, base)
        seller_cash = ledger.balance(seller_account, quote)
        events.append(
            TradeSettled(
                ts,
                market.symbol,
                trade_id,
                ledger.last_chain_id,
                booked,
                buyer_account,
                seller_account,
                base,
                quote,
                buyer_base.total,
                buyer_base.held,
                buyer_cash.total,
                buyer_cash.held,
                seller_base.total,
                seller_base.held,
                seller_cash.total,
                seller_cash.held,
            )
        )


def _dvp_legs(
    buyer: int,
    seller: int,
    base: str,
    quote: str,
    qty: int,
    pay: int,
    receive: int,
    buyer_fee: int,
    seller_fee: int,
) -> list[Leg]:
    """Security to the buyer; cash to the seller; the rounding difference; the fees.

    A self-trade (stp none) moves nothing between the account and itself: only its
    rounding and fees are booked.
    """
    legs: list[Leg] = []
    direct = min(pay, receive)
    if buyer != seller:
        legs.append((seller, buyer, base, qty, DELIVERY))
        if direct:
            legs.append((buyer, seller, quote, direct, PAYMENT))
    if pay > receive:
        legs.append((buyer, ROUNDING, quote, pay - receive, ROUNDING_KIND))
    elif receive > pay:
        legs.append((ROUNDING, seller, quote, receive - pay, ROUNDING_KIND))
    if buyer_fee:
        legs.append((buyer, FEE_INCOME, quote, buyer_fee, FEE))
    if seller_fee:
        legs.append((seller, FEE_INCOME, quote, seller_fee, FEE))
    return legs
