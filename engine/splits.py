"""Share splits: what an N:M split of a tokenized equity does to the venue's markets.

Owns, beyond the ledger's arithmetic (`settlement.corporate.split`): the refusals (the ratio,
every market of the asset halted, cancel-only or delisted, the units and caps after it, the
cash in lieu's payer and each holder's resting sells), the rescaling of resting orders
(quantity down to the step, buy prices down and sell prices up to the tick, so no book
crosses; priority kept), the cancel of orders left invalid, the rescaling of pending
withdrawals and of the `max_qty` caps, the reference price and band, the terms of its cash in
lieu (the named instrument's step and reference price, the payer, checked before anything
changes) and the events every holder sees. `engine.corporate.Corporate` dispatches to it and
owns the checks a split shares with a dividend. Rules and examples: docs/corporate-actions.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.book import BookSide, Order
from engine.clearing import balance_changed
from engine.commands import SplitShares
from engine.enums import CancelReason, InstrumentStatus, Side
from engine.events import (
    Event,
    Fact,
    OrderAmended,
    OrderCapsSet,
    ReferencePriceSet,
    ReservesAttested,
    SharesSplit,
    WithdrawalRescaled,
    WithdrawalVoided,
)
from engine.instrument import band_limits, notional_cap_problem
from engine.market import Market
from engine.reasons import ErrorCode
from engine.units import UNITS_MAX, format_units
from settlement.corporate import (
    DividendShort,
    Entitlement,
    LieuTerms,
    lieu_refusal,
    plan_cash_in_lieu,
    split,
    split_problem,
)
from settlement.ledger import Withdrawal

if TYPE_CHECKING:
    from engine.corporate import Corporate

RATIO_MAX = 1_000  # splits on record run from 1:100 to 100:1; ten times that is a typo
TRADING = frozenset((InstrumentStatus.OPEN, InstrumentStatus.POST_ONLY))
E = ErrorCode

Plan = tuple[Order, int, int]  # an order to keep, its new price and its new leaves_qty


class Splits:
    """Applies `SplitShares`: every market of the asset, its resting orders and holds, the
    pending withdrawals of the asset, then the ledger's split, all at the command's point."""

    def __init__(self, corporate: Corporate) -> None:
        self.corporate = corporate  # the checks and events a split shares with a dividend
        self.venue = corporate.venue
        self.ledger = corporate.ledger

    def split(self, cmd: SplitShares, events: list[Event]) -> None:
        markets = self._refusal(cmd, events)
        if markets is None:
            return
        asset = markets[0].spec.base
        ts = cmd.ts_us
        lieu = self._lieu_terms(cmd, asset) if cmd.cash_in_lieu else None
        provided = 0
        if lieu is not None:
            new, old = cmd.ratio_new, cmd.ratio_old
            plan = plan_cash_in_lieu(self.ledger, asset, new, old, lieu)
            provided = plan.provided
            if self._lieu_refused(cmd, lieu, provided, events):
                return
            if self._sells_uncovered(cmd, markets, plan.entitlements, lieu, events):
                return
            # Kept from the buys' new holds below (the payer's own buys cannot take it),
            # released just before the split books it.
            if provided:
                held = self.ledger.hold(lieu.payer, lieu.cash_asset, provided)
                assert held, f"payer {lieu.payer} cannot hold the cash in lieu it has"
        pending = self._release_withdrawals(asset, ts, events, cmd.withdrawals_held)
        touched: dict[tuple[int, str], None] = {}
        resting = sum(1 for market in markets for _ in market.book.iter_orders())
        plans = [self._plan(market, cmd, touched, events) for market in markets]
        amended = sum(len(kept) for kept in plans)
        if lieu is not None and provided:
            self.ledger.release(lieu.payer, lieu.cash_asset, provided)
        booked = split(self.ledger, asset, cmd.ratio_new, cmd.ratio_old, ts, lieu)
        for market, kept in zip(markets, plans, strict=True):
            self._rebuild(market, kept, cmd.ratio_new, cmd.ratio_old, events)
            price = _reference(market, cmd.ratio_new, cmd.ratio_old)
            market.set_reference_price(price)
            events.append(ReferencePriceSet(ts, market.symbol, price))
        self._rescale_withdrawals(pending, cmd, touched, events)
        if cmd.rescale_caps:
            for market in markets:
                self._rescale_caps(market, cmd, events)
        if booked.attestation is not None:
            events.append(ReservesAttested(ts, booked.attestation))
        chain_id = booked.transfers[0].chain_id if booked.transfers else 0
        symbol_market = self.venue.markets[cmd.symbol]
        cash = symbol_market.spec.quote
        for entitlement in booked.entitlements:
            events.append(
                self.corporate.applied(cmd, symbol_market, "split", entitlement, chain_id)
            )
            touched[(entitlement.account, asset)] = None
            if entitlement.cash:
                touched[(entitlement.account, cash)] = None
        if booked.provided:
            touched[(cmd.payer, cash)] = None
        for account, code in sorted(touched):
            events.append(balance_changed(self.ledger, account, code, ts))
        events.append(
            SharesSplit(
                ts,
                cmd.symbol,
                asset,
                cmd.ratio_new,
                cmd.ratio_old,
                len(booked.entitlements),
                booked.supply_before,
                booked.supply_after,
                booked.rounding_holding,
                amended,
                resting - amended,
                chain_id,
                cmd.payer if cmd.cash_in_lieu else 0,
                cash if cmd.cash_in_lieu else "",
                booked.provided,
                booked.provided - booked.residual,
                booked.residual,
            )
        )

    def _lieu_terms(self, cmd: SplitShares, asset: str) -> LieuTerms:
        """Cash in lieu at the named instrument's step and reference price, in its quote
        asset; each holder keeps the rescaled amounts of its withdrawals that stay pending."""
        market = self.venue.markets[cmd.symbol]
        spec = market.spec
        num, den = spec.notional_fraction
        withdrawn: dict[int, int] = {}
        for withdrawal in self.ledger.withdrawals.values():
            if withdrawal.asset == asset and (
                withdrawal.held_through_actions or cmd.withdrawals_held
            ):
                rescaled = withdrawal.amount * cmd.ratio_new // cmd.ratio_old
                withdrawn[withdrawal.account] = withdrawn.get(withdrawal.account, 0) + rescaled
        price_num = market.reference_price * num
        return LieuTerms(spec.quote, cmd.payer, market.qty_step, price_num, den, withdrawn)

    def _sells_uncovered(
        self,
        cmd: SplitShares,
        markets: list[Market],
        entitlements: list[Entitlement],
        lieu: LieuTerms,
        events: list[Event],
    ) -> bool:
        """Reject the split if some holder's resting sells and pending withdrawals would hold
        more of the asset after it than its holding keeps; True if rejected.

        Cash in lieu floors each holding to the named market's step, and each sell to its
        own market's: where another market of the asset has a finer step (or one the named
        step does not divide), a sell of a whole holding there rescales to more than the
        holding floored to the coarser step, and could not be held: the venue stopped on a
        broken invariant at every such split. Only sells the split keeps count (those below
        the minimum and the like are canceled and hold nothing)."""
        needs = dict(lieu.withdrawn)
        for market in markets:
            for order in market.book.iter_orders():
                if order.side is not Side.SELL:
                    continue
                price, leaves = _rescaled(order, market, cmd.ratio_new, cmd.ratio_old)
                if _survives(order, market, cmd, price, leaves):
                    needs[order.account] = needs.get(order.account, 0) + leaves
        for entitlement in entitlements:
            need = needs.get(entitlement.account, 0)
            if need > entitlement.holding_after:
                self.corporate.reject(
                    events,
                    cmd,
                    "split_shares",
                    E.BAD_PARAM,
                    _uncovered_detail(cmd, markets, entitlement, need),
                )
                return True
        return False

    def _lieu_refused(
        self, cmd: SplitShares, lieu: LieuTerms, provided: int, events: list[Event]
    ) -> bool:
        """Reject the split if its payer cannot pay the cash in lieu; True if rejected."""
        refused = lieu_refusal(self.ledger, lieu, provided)
        if refused is None:
            return False
        facts: tuple[Fact, ...] = ()
        if isinstance(refused, DividendShort):  # the numbers, as every INSUFFICIENT_BALANCE
            scale = self.ledger.assets[lieu.cash_asset].scale
            facts = (("needed", refused.needed, scale), ("available", refused.available, scale))
        asset = lieu.cash_asset if facts else None
        reason = ErrorCode[refused.reason]
        self.corporate.reject(events, cmd, "split_shares", reason, refused.detail, facts, asset)
        return True

    def _release_withdrawals(
        self, asset: str, ts: int, events: list[Event], all_held: bool
    ) -> list[Withdrawal]:
        """The pending withdrawals of the split asset that stay pending through it, their
        holds released so that the split books on an asset nothing holds (they hold again,
        rescaled, after it). Splits journaled before `withdrawals_held` voided those
        requested before withdrawals were held through corporate actions, and replay so:
        the custodian may have paid such a withdrawal out, and the void gave it back."""
        pending = []
        for withdrawal in list(self.ledger.withdrawals.values()):
            if withdrawal.asset != asset:
                continue
            if withdrawal.held_through_actions or all_held:
                self.ledger.release(withdrawal.account, asset, withdrawal.amount)
                pending.append(withdrawal)
            else:
                self.venue.custody.void(withdrawal.withdrawal_id, ts, events)
        return pending

    def _rescale_withdrawals(
        self,
        pending: list[Withdrawal],
        cmd: SplitShares,
        touched: dict[tuple[int, str], None],
        events: list[Event],
    ) -> None:
        """Hold each pending withdrawal again in new shares: floor(amount x N / M), as a
        resting sell's quantity; the fraction stays in the holder's balance, whose whole
        holding the split floored (the rest being the rounding account's). The custodian's
        confirm then burns the new shares, a void releases them. One rescaled to nothing (a
        reverse split of under one new unit) is voided: it has nothing left to withdraw.
        The holder's floored holding always covers them: a sum of floors is at most the
        floor of the sum, and sells hold floors too."""
        ts = cmd.ts_us
        for withdrawal in pending:
            amount = withdrawal.amount * cmd.ratio_new // cmd.ratio_old
            rescaled = self.ledger.rescale_withdrawal(withdrawal.withdrawal_id, amount)
            if rescaled is None:
                events.append(WithdrawalVoided(ts, withdrawal))
            else:
                events.append(WithdrawalRescaled(ts, rescaled, withdrawal.amount))
            touched[(withdrawal.account, withdrawal.asset)] = None

    def _rescale_caps(self, market: Market, cmd: SplitShares, events: list[Event]) -> None:
        """Scale the market's `max_qty` with the shares, so that every order the split
        rescaled (qty = floor(cum x N / M) + floor(leaves x N / M) <= floor(old qty x N / M))
        stays within it and can be amended: floor(max_qty x N / M), down to the step, kept
        within min_qty and `UNITS_MAX`. `max_notional` is cash, which a split does not
        change. No cap (0) stays none."""
        if not market.max_qty:
            return
        step = market.qty_step
        scaled = market.max_qty * cmd.ratio_new // (cmd.ratio_old * step) * step
        max_qty = max(min(scaled, UNITS_MAX // step * step), market.min_qty)
        max_notional = market.spec.max_notional
        market.set_caps(max_qty, max_notional)
        events.append(OrderCapsSet(cmd.ts_us, market.symbol, max_qty, max_notional))

    def _refusal(self, cmd: SplitShares, events: list[Event]) -> list[Market] | None:
        """Every market trading the split asset, or None after a rejection."""
        name = "split_shares"
        new, old = cmd.ratio_new, cmd.ratio_old
        if not (0 < new <= RATIO_MAX and 0 < old <= RATIO_MAX) or new == old:
            detail = f"the ratio is two different whole numbers within 1..{RATIO_MAX}"
            self.corporate.reject(events, cmd, name, E.BAD_PARAM, detail)
            return None
        market = self.corporate.equity_market(cmd, name, events)
        if market is None:
            return None
        asset = market.spec.base
        listed = [m for _, m in sorted(self.venue.markets.items())]
        if any(m.spec.quote == asset for m in listed):
            self.corporate.reject(events, cmd, name, E.BAD_PARAM, f"{asset} is also a quote asset")
            return None
        markets = [m for m in listed if m.spec.base == asset]
        trading = [m.symbol for m in markets if m.status in TRADING]
        if trading:
            detail = f"halt {', '.join(trading)} first (halted or cancel_only)"
            self.corporate.reject(events, cmd, name, E.INSTRUMENT_NOT_HALTED, detail)
            return None
        problem = split_problem(self.ledger, asset, new, old)
        if problem is None and any(_reference(m, new, old) > UNITS_MAX for m in markets):
            problem = "a reference price would pass the maximum"
        if problem is None and cmd.lot_checked:
            problem = next(filter(None, (_lot_problem(m, new, old) for m in markets)), None)
        if problem is not None:
            self.corporate.reject(events, cmd, name, E.BAD_PARAM, problem)
            return None
        return markets

    def _plan(
        self,
        market: Market,
        cmd: SplitShares,
        touched: dict[tuple[int, str], None],
        events: list[Event],
    ) -> list[Plan]:
        """The market's resting orders that survive the split, with their new price and
        leaves, in priority order; the others are canceled. Sells give up their holds (the
        split books on an asset nothing holds); buys move theirs to the new worst case.
        A sell's price rounds up, to one tick at least, so a split can multiply what it may
        trade: an order whose worst case then passes `order_value_max` goes. It is checked
        whole, even if its worth did not grow, since its units are counted anew. What it has
        filled grows by N / M too, and counts every fill of its life (it can pass the
        supply): an order whose new qty (cum + leaves) would pass `UNITS_MAX` goes, so its
        totals stay within 64 bits. Its filled value does not change."""
        kept: list[Plan] = []
        spec = market.spec
        for order in list(market.book.iter_orders()):
            price, leaves = _rescaled(order, market, cmd.ratio_new, cmd.ratio_old)
            if not _survives(order, market, cmd, price, leaves) or not self._rehold(
                order, market, price, leaves
            ):
                self.venue._cancel_open(order, CORPORATE, events)
                continue
            if order.side is Side.SELL:
                self.ledger.release(order.account, spec.base, order.hold)
                order.hold = 0
            asset = spec.quote if order.side is Side.BUY else spec.base
            touched[(order.account, asset)] = None
            kept.append((order, price, leaves))
        return kept

    def _rehold(self, order: Order, market: Market, price: int, leaves: int) -> bool:
        """Move a buy's cash hold to what it needs at its new price; False if short."""
        if order.side is not Side.BUY:
            return True
        clearing = self.venue.clearing
        assert clearing is not None
        need = clearing.buy_hold_for(order, market, price, leaves)
        delta = need - order.hold
        if delta > 0 and not self.ledger.hold(order.account, market.spec.quote, delta):
            return False
        if delta < 0:
            self.ledger.release(order.account, market.spec.quote, -delta)
        order.hold = need
        return True

    def _rebuild(
        self, market: Market, kept: list[Plan], ratio_new: int, ratio_old: int, events: list[Event]
    ) -> None:
        """Put the surviving orders back at their new prices, in their old priority order,
        each sell holding its new quantity; report each as amended. What an order has filled
        is counted in new shares too (cum x N / M, down to the step like the rest, so that
        its qty stays on the step and an amend of it leaves the rest on it), so its later
        fills add up in one unit; the value traded is unchanged (price x qty is the same
        before and after), so the average price reads in post-split prices and settlement
        arithmetic, which works on that value, is untouched."""
        book = market.book
        book.bids = BookSide(Side.BUY)
        book.asks = BookSide(Side.SELL)
        ts = self.venue.ts_us
        for order, price, leaves in kept:
            order.price = price
            order.leaves_qty = leaves
            order.cum_qty = _rescaled_cum(order, market, ratio_new, ratio_old)
            order.qty = order.cum_qty + leaves
            book.side(order.side).add(order)
            if order.side is Side.SELL:
                held = self.ledger.hold(order.account, market.spec.base, leaves)
                assert held, f"{order} cannot hold its rescaled quantity"
                order.hold = leaves
            events.append(
                OrderAmended(
                    ts,
                    order.order_id,
                    order.account,
                    order.symbol,
                    price,
                    order.qty,
                    leaves,
                    order.cum_qty,
                    order.status,
                    True,
                    order.cl_ord_id,
                )
            )


CORPORATE = CancelReason.CORPORATE_ACTION


def _rescaled(order: Order, market: Market, ratio_new: int, ratio_old: int) -> tuple[int, int]:
    """(price, leaves_qty) after an N:M split: qty down to the step; a buy's price down to
    the tick and a sell's up, so neither side gets a worse price and the book stays uncrossed."""
    step, tick = market.qty_step, market.price_tick
    leaves = order.leaves_qty * ratio_new // (ratio_old * step) * step
    scaled = order.price * ratio_old
    ticks = (
        scaled // (ratio_new * tick) if order.side is Side.BUY else -(-scaled // (ratio_new * tick))
    )
    return ticks * tick, leaves


def _survives(order: Order, market: Market, cmd: SplitShares, price: int, leaves: int) -> bool:
    """Whether a split keeps the order at its new price and leaves (a buy must also find the
    cash for its new hold): at least the minimum, a price within the venue's units, a worth
    within what one order may trade, and totals within 64 bits."""
    return not (
        leaves < market.min_qty
        or not 0 < price <= UNITS_MAX
        or market.above_value_max(price, leaves, order.filled_value)
        or _rescaled_cum(order, market, cmd.ratio_new, cmd.ratio_old) + leaves > UNITS_MAX
    )


def _uncovered_detail(
    cmd: SplitShares, markets: list[Market], entitlement: Entitlement, need: int
) -> str:
    """Why a split is refused whose rescaled sells would pass a holding: the figures, and
    the market whose step to name instead (the finest) or the orders to cancel first."""
    named = next(m for m in markets if m.symbol == cmd.symbol)
    scale = named.spec.qty_decimals
    # Named on a market whose step divides every market's, each sell fits; with steps that
    # do not divide each other (0.001 and 0.0015) no market is such, and only canceling helps.
    dividing = [
        m for m in markets if m is not named and all(o.qty_step % m.qty_step == 0 for o in markets)
    ]
    if dividing:
        finest = min(dividing, key=lambda m: (m.qty_step, m.symbol))
        advice = (
            f"name the market of the finest step ({finest.symbol},"
            f" {format_units(finest.qty_step, scale)}; its quote asset and reference price then"
            " price the cash in lieu), or cancel those sells first"
        )
    else:
        advice = (
            "cancel those sells first (no other market's step divides every market's step:"
            " naming one would not fit them either)"
        )
    return (
        f"account {entitlement.account}'s resting sells and pending withdrawals of"
        f" {named.spec.base} would hold {format_units(need, scale)} after the split, more than"
        f" the {format_units(entitlement.holding_after, scale)} its holding keeps at"
        f" {cmd.symbol}'s step of {format_units(named.qty_step, scale)}: {advice}"
    )


def _rescaled_cum(order: Order, market: Market, ratio_new: int, ratio_old: int) -> int:
    """The order's cum_qty after an N:M split: cum x N / M, down to the step."""
    step = market.qty_step
    return order.cum_qty * ratio_new // (ratio_old * step) * step


def _lot_problem(market: Market, ratio_new: int, ratio_old: int) -> str | None:
    """Why the market's `max_notional` would refuse every order after the split (one lot,
    min_qty, above it at the new band's low), or None: as a reference price is refused."""
    band_low = band_limits(
        _reference(market, ratio_new, ratio_old), market.spec.price_band_bps, market.price_tick
    )[0]
    problem = notional_cap_problem(market.spec, band_low)
    if problem is None:
        return None
    return (
        f"after the split every order on {market.symbol} would be refused: {problem}; raise"
        " max_notional first (admin.set_order_caps)"
    )


def _reference(market: Market, ratio_new: int, ratio_old: int) -> int:
    """The reference price after the split: down to the tick, at least one tick."""
    tick = market.price_tick
    return max(market.reference_price * ratio_old // (ratio_new * tick) * tick, tick)
