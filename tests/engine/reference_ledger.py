"""A naive reference for clearing and settlement: `ReferenceVenue` with balances.

`ReferenceClearedVenue` extends the reference matcher of `tests.engine.reference` with
docs/settlement.md, written in the plainest way: balances are a dict (account, asset) ->
[total, held], every order dict carries what it holds and its running totals, and every
amount of cash is an exact `Fraction` rounded once, from those running totals, right where
docs/settlement.md says so. It calls nothing of `settlement` or `engine.clearing`; it
shares only the vocabulary (commands, events, enums, reasons, `Transfer` and the ledger's
record structs), so it can only agree with `Venue(config, Ledger())` by both being right.

The matcher's `_place`, `_amend` and `_match` are rewritten here (the same steps as in
`ReferenceVenue`, with eligibility, holds and settlement put where the docs put them); the
rest of the matcher is inherited, its `_close` and `_expire_gtd` extended to release holds
and to mature T-bills. Where the docs are silent (the order of events, the legs of a
self-trade, the wording of details, limits of the ledger), the engine's choice is copied and
marked "engine's choice".
"""

from decimal import Decimal
from fractions import Fraction
from math import ceil, floor
from typing import Any

from engine.commands import (
    AttestReserves,
    ConfirmWithdrawal,
    Deposit,
    ListAsset,
    ListInstrument,
    OpenAccount,
    PlaceOrder,
    RequestWithdrawal,
    VoidWithdrawal,
)
from engine.enums import (
    CancelReason,
    InstrumentKind,
    InstrumentStatus,
    Liquidity,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from engine.events import (
    AccountOpened,
    AssetListed,
    BalanceChanged,
    Deposited,
    InstrumentListed,
    InstrumentMatured,
    InstrumentStatusChanged,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    ReservesAttested,
    TradeExecuted,
    TradeSettled,
    WithdrawalConfirmed,
    WithdrawalRequested,
    WithdrawalVoided,
)
from engine.instrument import InstrumentSpec
from engine.reasons import ErrorCode
from engine.units import UNITS_MAX
from settlement.ledger import (
    AssetSpec,
    Attestation,
    Participant,
    Withdrawal,
    exceeded_detail,
    older_detail,
    stale_detail,
    too_many_withdrawals_detail,
)
from settlement.transfers import Transfer, TransferKind
from tests.engine.reference import TEXT_MAX, Market, Order, ReferenceVenue

E = ErrorCode
BUY, SELL = Side.BUY, Side.SELL
BPS = 10_000

# docs/settlement.md: the venue's own accounts, one of each per asset.
ISSUANCE, FEE_INCOME, ROUNDING, REDEMPTION = -1, -2, -3, -4

# Engine's choice: the ledger's limits (docs/settlement.md names none of them).
ASSET_CODE_MAX = 24
ASSET_SCALE_MAX = 18
PENDING_WITHDRAWALS_MAX = 100

Leg = tuple[int, int, str, int, TransferKind]


class ReferenceClearedVenue(ReferenceVenue):
    """`ReferenceVenue` that also clears and settles, like `Venue(config, Ledger())`."""

    def __init__(
        self,
        reserve_staleness_max_us: int = 26 * 3_600_000_000,
        open_orders_per_account_max: int = 20_000,
        closed_orders_retained_max: int = 1_000_000,
    ) -> None:
        super().__init__(open_orders_per_account_max, closed_orders_retained_max)
        self.staleness_max = reserve_staleness_max_us
        self.assets: dict[str, int] = {}  # code -> scale
        self.participants: dict[int, Participant] = {}
        self.balances: dict[tuple[int, str], list[int]] = {}  # -> [total, held]
        self.attestations: dict[str, Attestation] = {}
        self.pending: dict[int, Withdrawal] = {}  # pending withdrawals, oldest first
        self.maturities: list[tuple[int, str]] = []  # (maturity_us, symbol) not yet due
        self.matured_assets: set[str] = set()  # docs: no attestation or mint of these
        self.last_transfer_id = 0
        self.last_chain_id = 0
        self.last_withdrawal_id = 0
        self.seller_fees_capped = 0  # fills whose seller fee was cut to the fill's proceeds
        self._custody = {
            ListAsset: self._list_asset,
            OpenAccount: self._open_account,
            AttestReserves: self._attest,
            Deposit: self._deposit,
            RequestWithdrawal: self._request_withdrawal,
            ConfirmWithdrawal: self._confirm_withdrawal,
            VoidWithdrawal: self._void_withdrawal,
        }

    # ------------------------------------------------------------------ entry point

    def execute(self, cmd: Any) -> list[Any]:
        handler = self._custody.get(type(cmd))
        if handler is None:
            return super().execute(cmd)
        assert cmd.ts_us >= self.ts, "time went backwards"
        self.ts = cmd.ts_us
        self.events = []
        self._expire_gtd()
        handler(cmd)
        return self.events

    # ------------------------------------------------------------------ queries

    def balance(self, account: int, asset: str) -> tuple[int, int]:
        total, held = self.balances.get((account, asset), (0, 0))
        return total, held

    def available(self, account: int, asset: str) -> int:
        total, held = self.balance(account, asset)
        return total - held

    def supply(self, asset: str) -> int:
        """What has been minted and not burned: minus the issuance account's total."""
        return -self.balance(ISSUANCE, asset)[0]

    def nonzero_balances(self) -> dict[tuple[int, str], tuple[int, int]]:
        return {key: (t, h) for key, (t, h) in self.balances.items() if t or h}

    def check(self) -> None:
        """The docs' invariants on the reference's own state."""
        sums: dict[str, int] = {}
        for (account, asset), (total, held) in self.balances.items():
            sums[asset] = sums.get(asset, 0) + total
            if account > 0:
                assert 0 <= held <= total, f"{account} {asset}: {total} total, {held} held"
            else:
                assert held == 0, f"venue account {account} holds {asset}"
        assert not any(sums.values()), f"assets do not sum to zero: {sums}"
        held: dict[tuple[int, str], int] = {}
        for w in self.pending.values():
            held[(w.account, w.asset)] = held.get((w.account, w.asset), 0) + w.amount
        for o in self.open.values():
            key = (o["account"], self._hold_asset(o))
            held[key] = held.get(key, 0) + o["hold"]
        for key, (_, h) in self.balances.items():
            assert held.pop(key, 0) == h, f"{key} holds {h}, its orders and withdrawals differ"
        assert not any(held.values()), f"holds without balances: {held}"

    # ------------------------------------------------------------------ balances

    def _balance(self, account: int, asset: str) -> list[int]:
        return self.balances.setdefault((account, asset), [0, 0])

    def _report(self, account: int, asset: str) -> None:
        total, held = self.balance(account, asset)
        self.events.append(BalanceChanged(self.ts, account, asset, total, held))

    def _book(self, legs: list[Leg]) -> list[Transfer]:
        """One chain: every leg applied, ids consecutive, one chain id for all of them."""
        self.last_chain_id += 1
        booked = []
        for debit, credit, asset, amount, kind in legs:
            assert amount > 0 and debit != credit, (debit, credit, amount)
            self.last_transfer_id += 1
            self._balance(debit, asset)[0] -= amount
            self._balance(credit, asset)[0] += amount
            booked.append(
                Transfer(
                    self.last_transfer_id,
                    self.last_chain_id,
                    debit,
                    credit,
                    asset,
                    amount,
                    kind,
                    self.ts,
                )
            )
        for debit, _, asset, _, _ in legs:
            total, held = self.balance(debit, asset)
            assert debit < 0 or 0 <= held <= total, f"{debit} overdrew {asset}"
        return booked

    # ------------------------------------------------------------------ exact cash

    @staticmethod
    def _worst_rate(spec: InstrumentSpec) -> Fraction:
        """docs, Holds: a buy holds fees at the higher of the maker and taker rates."""
        return Fraction(max(spec.maker_fee_bps, spec.taker_fee_bps), BPS)

    def _worst_buy(self, market: Market, order: Order, price: int, leaves: int) -> int:
        """What a buy must still hold: all of `leaves` at `price` and the highest fee rate.

        docs: a fresh limit buy holds ceil(cash) + ceil(cash x max fee); after fills, the
        same worst case on the order's running totals minus what it has paid already. The
        docs' "ceil(that x fee)" is read as the fee on the exact cash (fees are exact until
        rounded once); the fee on the rounded-up cash would differ only for a rate that does
        not divide 10**4, and rarely (the bills' 3 bps).
        """
        spec: InstrumentSpec = market["spec"]
        rest = self.notional(market, price, leaves)
        worst_rate = self._worst_rate(spec)
        cash = ceil(order["cash"] + rest) - order["paid"]
        fees = ceil(order["fee"] + rest * worst_rate) - order["fees_paid"]
        return cash + fees

    def _hold_asset(self, order: Order) -> str:
        spec: InstrumentSpec = self.markets[order["symbol"]]["spec"]
        return spec.quote if order["side"] == BUY else spec.base

    def _set_hold(self, order: Order, amount: int) -> None:
        """Move what an open order holds to `amount`, reported when it changes."""
        delta = amount - order["hold"]
        if not delta:
            return
        asset = self._hold_asset(order)
        balance = self._balance(order["account"], asset)
        balance[1] += delta
        assert 0 <= balance[1] <= balance[0], f"order {order['id']} cannot hold {amount}"
        order["hold"] = amount
        self._report(order["account"], asset)

    def _close(self, order: Order) -> None:
        """docs: a closing order releases what it still holds."""
        self._set_hold(order, 0)
        super()._close(order)

    # ------------------------------------------------------------------ eligibility

    def _eligible(self, account: int, spec: InstrumentSpec) -> bool:
        who = self.participants.get(account)
        return (
            who is not None
            and who.kyc_approved
            and who.jurisdiction not in spec.excluded_jurisdictions
        )

    # ------------------------------------------------------------------ place

    def _place(self, cmd: PlaceOrder) -> None:
        name = "place_order"
        problem = self._shape_problem(cmd)
        if problem is not None:
            return self._reject(cmd, name, E.BAD_PARAM, problem)
        market = self.markets.get(cmd.symbol)
        if market is None:
            return self._reject(cmd, name, E.UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol!r}")
        spec: InstrumentSpec = market["spec"]
        sym = cmd.symbol
        status = market["status"]
        is_limit = cmd.order_type == OrderType.LIMIT
        rests = is_limit and cmd.tif in (TimeInForce.GTC, TimeInForce.GTD)
        if status == InstrumentStatus.DELISTED:
            return self._reject(cmd, name, E.INSTRUMENT_DELISTED, f"{sym} is delisted")
        if status == InstrumentStatus.HALTED:
            return self._reject(cmd, name, E.INSTRUMENT_HALTED, f"{sym} is halted")
        if status == InstrumentStatus.CANCEL_ONLY:
            return self._reject(cmd, name, E.CANCEL_ONLY, f"{sym} accepts only cancels")
        if status == InstrumentStatus.POST_ONLY and not cmd.post_only:
            return self._reject(cmd, name, E.POST_ONLY_MODE, f"{sym} accepts only post-only orders")
        if not self._eligible(cmd.account, spec):
            detail = f"account {cmd.account} may not trade {sym}"  # engine's choice: wording
            return self._reject(cmd, name, E.NOT_ELIGIBLE, detail)
        if cmd.tif == TimeInForce.GTD and cmd.expire_at_us <= cmd.ts_us:
            return self._reject(cmd, name, E.INVALID_EXPIRE_AT, "expire_at is not in the future")
        if cmd.cl_ord_id is not None:
            live = self._find(cmd.account, 0, cmd.cl_ord_id)
            if live is not None:
                detail = f"cl_ord_id {cmd.cl_ord_id!r} is in use"
                return self._reject(cmd, name, E.DUPLICATE_CL_ORD_ID, detail, live["id"])
        if cmd.price % spec.price_tick != 0:
            return self._reject(cmd, name, E.INVALID_PRICE_TICK, "price is not on the tick")
        if cmd.qty % spec.qty_step != 0:
            return self._reject(cmd, name, E.INVALID_QTY_STEP, "qty is not a multiple of the step")
        if cmd.quote_qty == 0 and cmd.qty < spec.min_qty:
            return self._reject(cmd, name, E.BELOW_MIN_QTY, "qty is below the minimum")
        if is_limit:
            outside = cmd.price > market["high"] if cmd.side == BUY else cmd.price < market["low"]
            if outside:
                return self._reject(cmd, name, E.PRICE_BAND, "price is outside the band")
            if self.notional(market, cmd.price, cmd.qty) < spec.min_notional:
                return self._reject(
                    cmd, name, E.BELOW_MIN_NOTIONAL, "notional is below the minimum"
                )
        elif cmd.quote_qty > 0:
            if cmd.quote_qty < spec.min_notional:
                return self._reject(
                    cmd, name, E.BELOW_MIN_NOTIONAL, "quote_qty is below the minimum notional"
                )
        elif self.notional(market, market["ref"], cmd.qty) < spec.min_notional:
            return self._reject(
                cmd,
                name,
                E.BELOW_MIN_NOTIONAL,
                "notional at the reference price is below the minimum",
            )
        if rests and len(self.account_open_orders(cmd.account)) >= self.open_max:
            return self._reject(
                cmd, name, E.TOO_MANY_OPEN_ORDERS, "the account has too many open orders"
            )
        # docs, Holds: a sell holds its quantity; a buy its worst case at its limit (a market
        # buy: at the band's high; by quote_qty: the amount and the worst fee on it).
        order = self._new_order(cmd)
        if cmd.side == SELL:
            hold = cmd.qty
        elif cmd.quote_qty:
            hold = cmd.quote_qty + ceil(cmd.quote_qty * self._worst_rate(spec))
        else:
            price = cmd.price if is_limit else market["high"]
            hold = self._worst_buy(market, order, price, cmd.qty)
        asset = spec.quote if cmd.side == BUY else spec.base
        if self.available(cmd.account, asset) < hold:
            # Engine's choice: the wording of the detail.
            return self._reject(cmd, name, E.INSUFFICIENT_BALANCE, f"{asset} is short")

        market_limit = market["high"] if cmd.side == BUY else market["low"]
        limit = cmd.price if is_limit else market_limit
        opposite = self._opposite(cmd.side)
        best = self._best(sym, opposite)
        crosses = best is not None and self._within(cmd.side, best["price"], limit)
        if cmd.post_only and crosses:
            return self._reject(cmd, name, E.POST_ONLY_WOULD_TAKE, "the order would take")
        if cmd.tif == TimeInForce.FOK and not self._fok_fillable(cmd, limit):
            return self._reject(cmd, name, E.FOK_NOT_FILLABLE, "not enough liquidity")
        if not is_limit and not crosses:
            return self._reject(
                cmd, name, E.MARKET_NO_LIQUIDITY, "nothing to trade within the band"
            )

        self.last_order_id += 1
        order["id"] = self.last_order_id
        self.events.append(
            OrderAccepted(
                self.ts,
                order["id"],
                cmd.account,
                sym,
                cmd.side,
                cmd.order_type,
                cmd.tif,
                cmd.price,
                cmd.qty,
                cmd.quote_qty,
                cmd.post_only,
                cmd.stp,
                cmd.cl_ord_id,
                cmd.tag,
                cmd.expire_at_us,
            )
        )
        self._set_hold(order, hold)  # engine's choice: reported right after OrderAccepted
        still_open = self._match(market, order, limit, cmd.quote_qty) if crosses else True
        if not still_open:
            self._close(order)
        elif rests:
            if cmd.side == BUY:  # docs: a buy that rests after trading holds its worst case
                self._set_hold(order, self._worst_buy(market, order, cmd.price, order["leaves"]))
            market["book"].append(order)
            self.open[order["id"]] = order
        else:
            canceled = order["leaves"]
            order["leaves"] = 0
            order["status"] = OrderStatus.CANCELED
            # Engine's choice: the end of an IOC is reported before its hold is released.
            self.events.append(
                OrderCanceled(
                    self.ts,
                    order["id"],
                    order["account"],
                    sym,
                    CancelReason.IOC_REST,
                    canceled,
                    order["cum"],
                )
            )
            self._close(order)
        return None

    def _new_order(self, cmd: PlaceOrder) -> Order:
        return {
            "id": 0,
            "account": cmd.account,
            "symbol": cmd.symbol,
            "side": cmd.side,
            "tif": cmd.tif,
            "price": cmd.price,
            "qty": cmd.qty,
            "leaves": cmd.qty,
            "cum": 0,
            "status": OrderStatus.NEW,
            "post_only": cmd.post_only,
            "stp": cmd.stp,
            "cl_ord_id": cmd.cl_ord_id,
            "tag": cmd.tag,
            "expire_at": cmd.expire_at_us,
            # Clearing: what the order holds, and its running totals (docs: "the one
            # rounding rule" rounds these, never a single fill).
            "hold": 0,
            "cash": Fraction(0),  # exact cash of its fills so far
            "paid": 0,  # cash paid (a buy) or received (a sell) so far
            "fee": Fraction(0),  # exact fees so far
            "fees_paid": 0,
        }

    # ------------------------------------------------------------------ matching

    def _match(self, market: Market, taker: Order, limit: int, quote_qty: int) -> bool:
        """Trade the taker against the book, settling each trade; True if still open."""
        symbol = market["spec"].symbol
        step = market["spec"].qty_step
        budget = Fraction(quote_qty)
        last_price = 0
        still_open = True
        # Engine's choice: makers that left the book (filled, or expired by self-trade
        # prevention) release their holds once matching leaves their price level.
        leaving: list[Order] = []
        level_price = 0
        while True:
            makers = self.side_in_priority(symbol, self._opposite(taker["side"]))
            if not makers or not self._within(taker["side"], makers[0]["price"], limit):
                break
            maker = makers[0]
            price = maker["price"]
            if price != level_price:
                for gone in leaving:
                    self._close(gone)
                leaving = []
                level_price = price
            if maker["account"] == taker["account"] and taker["stp"] != SelfTradePrevention.NONE:
                stp = taker["stp"]
                if stp in (SelfTradePrevention.EXPIRE_MAKER, SelfTradePrevention.EXPIRE_BOTH):
                    self._prevent(maker, Liquidity.MAKER, taker["id"])
                    self._unbook(maker)
                    leaving.append(maker)
                if stp in (SelfTradePrevention.EXPIRE_TAKER, SelfTradePrevention.EXPIRE_BOTH):
                    self._prevent(taker, Liquidity.TAKER, maker["id"])
                    still_open = False
                    break
                continue
            if quote_qty:
                step_cost = self.notional(market, price, step)
                qty = min(int(budget // step_cost) * step, maker["leaves"])
                if qty == 0:
                    break
            else:
                qty = min(taker["leaves"], maker["leaves"])
            maker["leaves"] -= qty
            maker["cum"] += qty
            maker["status"] = (
                OrderStatus.FILLED if maker["leaves"] == 0 else OrderStatus.PARTIALLY_FILLED
            )
            taker["cum"] += qty
            if quote_qty:
                budget -= self.notional(market, price, qty)
                done = budget < step_cost
            else:
                taker["leaves"] -= qty
                done = taker["leaves"] == 0
            taker["status"] = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
            market["trade_id"] += 1
            last_price = price
            self.events.append(
                TradeExecuted(
                    self.ts,
                    symbol,
                    market["trade_id"],
                    price,
                    qty,
                    taker["side"],
                    maker["id"],
                    maker["account"],
                    maker["leaves"],
                    maker["cum"],
                    maker["status"],
                    taker["id"],
                    taker["account"],
                    taker["leaves"],
                    taker["cum"],
                    taker["status"],
                )
            )
            self._settle(market, maker, taker, price, qty)
            if maker["leaves"] == 0:
                self._unbook(maker)
                leaving.append(maker)
            if done:
                still_open = False
                break
        for gone in leaving:
            self._close(gone)
        if last_price:
            self._set_ref(market, last_price)
        return still_open

    def _settle(self, market: Market, maker: Order, taker: Order, price: int, qty: int) -> None:
        """docs, Delivery versus payment: one chain per trade, reported, balances after."""
        spec: InstrumentSpec = market["spec"]
        base, quote = spec.base, spec.quote
        if taker["side"] == BUY:
            buyer, seller = taker, maker
            buyer_bps, seller_bps = spec.taker_fee_bps, spec.maker_fee_bps
        else:
            buyer, seller = maker, taker
            buyer_bps, seller_bps = spec.maker_fee_bps, spec.taker_fee_bps
        cash = self.notional(market, price, qty)
        # The one rounding rule: a buyer has paid ceil(its exact cash so far), a seller has
        # received floor(its exact cash so far), each ceil(its exact fees so far) in fees.
        buyer["cash"] += cash
        pay = ceil(buyer["cash"]) - buyer["paid"]
        buyer["paid"] += pay
        seller["cash"] += cash
        receive = floor(seller["cash"]) - seller["paid"]
        seller["paid"] += receive
        buyer["fee"] += cash * Fraction(buyer_bps, BPS)
        buyer_fee = ceil(buyer["fee"]) - buyer["fees_paid"]
        buyer["fees_paid"] += buyer_fee
        seller["fee"] += cash * Fraction(seller_bps, BPS)
        seller_owes = ceil(seller["fee"]) - seller["fees_paid"]
        seller_fee = min(seller_owes, receive)  # never more than this fill's proceeds
        if seller_fee < seller_owes:
            self.seller_fees_capped += 1
        seller["fees_paid"] += seller_fee

        b, s = buyer["account"], seller["account"]
        legs: list[Leg] = []
        if b != s:
            # Engine's choice: a self-trade (stp none) books no delivery or payment from the
            # account to itself, only its rounding and fees; otherwise the payment leg is
            # what both sides agree on and the rounding leg the difference.
            legs.append((s, b, base, qty, TransferKind.DELIVERY))
            if min(pay, receive):
                legs.append((b, s, quote, min(pay, receive), TransferKind.PAYMENT))
        if pay > receive:
            legs.append((b, ROUNDING, quote, pay - receive, TransferKind.ROUNDING))
        elif receive > pay:
            legs.append((ROUNDING, s, quote, receive - pay, TransferKind.ROUNDING))
        if buyer_fee:
            legs.append((b, FEE_INCOME, quote, buyer_fee, TransferKind.FEE))
        if seller_fee:
            legs.append((s, FEE_INCOME, quote, seller_fee, TransferKind.FEE))
        # The fill spends from the holds: the buyer's cash and fee, the seller's quantity.
        # Engine's choice: a maker's hold is only ever spent, never reset to the worst case
        # of what is left (docs' "a buy that rests after trading" read as the taker), so a
        # maker buy keeps holding the fee above its maker rate until it closes.
        for order, asset, spent in ((buyer, quote, pay + buyer_fee), (seller, base, qty)):
            order["hold"] -= spent
            assert order["hold"] >= 0, f"order {order['id']} spent more than it held"
            self._balance(order["account"], asset)[1] -= spent
        # Engine's choice: a self-trade whose rounding and fees are all zero still takes a
        # chain id, and reports an empty TradeSettled. The settlement carries the parties'
        # base and quote balances as the chain left them.
        booked = self._book(legs)
        self.events.append(
            TradeSettled(
                self.ts,
                spec.symbol,
                market["trade_id"],
                self.last_chain_id,
                tuple(booked),
                b,
                s,
                base,
                quote,
                *self.balance(b, base),
                *self.balance(b, quote),
                *self.balance(s, base),
                *self.balance(s, quote),
            )
        )

    # ------------------------------------------------------------------ amend

    def _amend_hold(self, market: Market, order: Order, price: int, qty: int) -> int:
        """What the order must hold once amended to `qty` in all at `price`."""
        leaves = qty - order["cum"]
        if order["side"] == SELL:
            return leaves
        return self._worst_buy(market, order, price, leaves)

    def _amend(self, cmd: Any) -> None:
        name = "amend_order"
        one_id = (cmd.order_id > 0) != (cmd.cl_ord_id is not None)
        in_range = cmd.order_id >= 0 and 0 <= cmd.price <= UNITS_MAX and 0 <= cmd.qty <= UNITS_MAX
        if not one_id or not in_range:
            return self._reject(cmd, name, E.BAD_PARAM, "one of order_id, cl_ord_id; no negatives")
        new_cl = cmd.new_cl_ord_id
        nothing = cmd.price == 0 and cmd.qty == 0 and new_cl is None
        if nothing or (new_cl is not None and not 1 <= len(new_cl) <= TEXT_MAX):
            return self._reject(cmd, name, E.BAD_PARAM, "give price, qty or a new cl_ord_id")
        order = self._find(cmd.account, cmd.order_id, cmd.cl_ord_id)
        if order is None:
            return self._reject_missing(cmd, name)
        market = self.markets[order["symbol"]]
        spec: InstrumentSpec = market["spec"]
        sym = order["symbol"]
        status = market["status"]
        price = cmd.price or order["price"]
        qty = cmd.qty or order["qty"]
        renames = new_cl is not None and new_cl != order["cl_ord_id"]

        def refuse(reason: ErrorCode, detail: str) -> None:
            self._reject(cmd, name, reason, detail, order["id"])

        if status == InstrumentStatus.HALTED:
            return refuse(E.INSTRUMENT_HALTED, f"{sym} is halted")
        if status == InstrumentStatus.CANCEL_ONLY:
            return refuse(E.CANCEL_ONLY, f"{sym} accepts only cancels")
        if price == order["price"] and qty == order["qty"] and not renames:
            return refuse(E.AMEND_REJECTED, "the amend changes nothing")
        if renames and self._find(order["account"], 0, new_cl) is not None:
            return refuse(E.DUPLICATE_CL_ORD_ID, f"cl_ord_id {new_cl!r} is in use")
        if price % spec.price_tick != 0:
            return refuse(E.INVALID_PRICE_TICK, "price is not on the tick")
        if qty % spec.qty_step != 0:
            return refuse(E.INVALID_QTY_STEP, "qty is not a multiple of the step")
        done = qty <= order["cum"]
        if not done:
            if qty < spec.min_qty:
                return refuse(E.BELOW_MIN_QTY, "qty is below the minimum")
            outside = price > market["high"] if order["side"] == BUY else price < market["low"]
            if outside:
                return refuse(E.PRICE_BAND, "price is outside the band")
            if self.notional(market, price, qty) < spec.min_notional:
                return refuse(E.BELOW_MIN_NOTIONAL, "notional is below the minimum")
            # docs: an amend that needs more must find it available, after BELOW_MIN_NOTIONAL.
            more = self._amend_hold(market, order, price, qty) - order["hold"]
            asset = self._hold_asset(order)
            if more > self.available(order["account"], asset):
                return refuse(E.INSUFFICIENT_BALANCE, f"{asset} is short")
            best = self._best(sym, self._opposite(order["side"]))
            if best is not None and self._within(order["side"], best["price"], price):
                if status == InstrumentStatus.POST_ONLY:
                    return refuse(E.POST_ONLY_MODE, f"{sym} accepts only post-only orders")
                if order["post_only"]:
                    return refuse(E.POST_ONLY_WOULD_TAKE, "the amended order would take")

        if renames:
            order["cl_ord_id"] = new_cl
        keeps_priority = price == order["price"] and qty <= order["qty"]
        if done:
            self._unbook(order)
            order["qty"] = order["cum"]
            order["leaves"] = 0
            order["status"] = OrderStatus.FILLED
        elif keeps_priority:
            order["leaves"] -= order["qty"] - qty
            order["qty"] = qty
        else:
            self._unbook(order)
            order["price"] = price
            order["qty"] = qty
            order["leaves"] = qty - order["cum"]
        self.events.append(
            OrderAmended(
                self.ts,
                order["id"],
                order["account"],
                sym,
                order["price"],
                order["qty"],
                order["leaves"],
                order["cum"],
                order["status"],
                keeps_priority,
                order["cl_ord_id"],
            )
        )
        if done:
            self._close(order)  # engine's choice: released after OrderAmended
            return None
        # docs: an amended order holds the worst case of what is left (engine's choice: the
        # change is reported after OrderAmended and before any trade of the amend).
        self._set_hold(order, self._amend_hold(market, order, price, qty))
        if keeps_priority:
            return None
        best = self._best(sym, self._opposite(order["side"]))
        crosses = best is not None and self._within(order["side"], best["price"], price)
        if crosses and not self._match(market, order, price, 0):
            self._close(order)
            return None
        if crosses and order["side"] == BUY:
            # docs: "A buy that rests after trading (or is amended) has its hold set to the
            # worst case of what is left ..., which releases any price improvement".
            self._set_hold(order, self._worst_buy(market, order, price, order["leaves"]))
        market["book"].append(order)
        return None

    # ------------------------------------------------------------------ listing and time

    def _list(self, cmd: ListInstrument) -> None:
        spec = cmd.spec
        if (
            isinstance(spec, InstrumentSpec)
            and spec.problem() is None
            and spec.symbol not in self.markets
        ):
            problem = self._listing_problem(spec)
            if problem is not None:
                return self._reject(cmd, "list_instrument", E.BAD_PARAM, problem)
        super()._list(cmd)
        if self.events and isinstance(self.events[-1], InstrumentListed) and spec.maturity_us:
            self.maturities.append((spec.maturity_us, spec.symbol))
        return None

    def _listing_problem(self, spec: InstrumentSpec) -> str | None:
        """docs, Instruments: the assets listed first, at the instrument's scales."""
        base, quote = self.assets.get(spec.base), self.assets.get(spec.quote)
        # Engine's choice: the wording, and the T-bill check (docs: face converts to cash).
        if base is None or quote is None:
            return f"list the assets {spec.base} and {spec.quote} first"
        if base != spec.qty_decimals or quote != spec.quote_decimals:
            return "qty_decimals and quote_decimals must equal the assets' scales"
        if spec.kind == InstrumentKind.TBILL and spec.quote_decimals < spec.qty_decimals:
            return "a T-bill's face units must convert exactly into cash units"
        return None

    def _expire_gtd(self) -> None:
        """Before any command: gtd expiries, then (engine's choice: after them) maturities."""
        super()._expire_gtd()
        due = sorted(m for m in self.maturities if m[0] <= self.ts)
        for maturity in due:
            self.maturities.remove(maturity)
            self._mature(maturity[1])

    def _mature(self, symbol: str) -> None:
        """docs, T-bills: cancel_only, orders canceled, withdrawals voided, par paid once."""
        market = self.markets[symbol]
        spec: InstrumentSpec = market["spec"]
        self.matured_assets.add(spec.base)
        if market["status"] != InstrumentStatus.DELISTED:  # a delisted bill is still redeemed
            market["status"] = InstrumentStatus.CANCEL_ONLY
            self.events.append(
                InstrumentStatusChanged(self.ts, symbol, InstrumentStatus.CANCEL_ONLY)
            )
            for side in (BUY, SELL):  # engine's choice: bids then asks, each in priority order
                for order in self.side_in_priority(symbol, side):
                    self._cancel_one(order, CancelReason.MATURITY)
        for withdrawal in list(self.pending.values()):
            if withdrawal.asset == spec.base:
                self._void(withdrawal)
        holders = sorted(
            (account, total)
            for (account, asset), (total, _) in self.balances.items()
            if asset == spec.base and account > 0 and total > 0
        )
        par = 10 ** (spec.quote_decimals - spec.qty_decimals)  # cash units per face unit
        chain_id = 0
        if holders:
            # Engine's choice: the par cash minted into the redemption account first, then
            # per holder (by account id) its burn and its payment.
            legs: list[Leg] = [
                (
                    ISSUANCE,
                    REDEMPTION,
                    spec.quote,
                    sum(a for _, a in holders) * par,
                    TransferKind.MINT,
                )
            ]
            for account, amount in holders:
                legs.append((account, ISSUANCE, spec.base, amount, TransferKind.BURN))
                legs.append(
                    (REDEMPTION, account, spec.quote, amount * par, TransferKind.REDEMPTION)
                )
            self._book(legs)
            chain_id = self.last_chain_id
            for account, _ in holders:
                self._report(account, spec.base)
                self._report(account, spec.quote)
        face = sum(amount for _, amount in holders)
        self.events.append(
            InstrumentMatured(self.ts, symbol, len(holders), face, face * par, chain_id)
        )

    # ------------------------------------------------------------------ custody

    def _custody_reject(self, cmd: Any, name: str, reason: ErrorCode, detail: str) -> None:
        # Engine's choice: the details are the ledger's messages.
        self._reject(cmd, name, reason, detail)

    def _list_asset(self, cmd: ListAsset) -> None:
        name = "list_asset"
        if not cmd.code or len(cmd.code) > ASSET_CODE_MAX:
            detail = f"asset codes have 1..{ASSET_CODE_MAX} characters"
            return self._custody_reject(cmd, name, E.BAD_PARAM, detail)
        if not 0 <= cmd.scale <= ASSET_SCALE_MAX:
            detail = f"asset scale must be within 0..{ASSET_SCALE_MAX}"
            return self._custody_reject(cmd, name, E.BAD_PARAM, detail)
        if cmd.code in self.assets:
            return self._custody_reject(cmd, name, E.ASSET_EXISTS, f"asset {cmd.code} exists")
        self.assets[cmd.code] = cmd.scale
        self.events.append(AssetListed(self.ts, AssetSpec(cmd.code, cmd.scale)))
        return None

    def _open_account(self, cmd: OpenAccount) -> None:
        name = "open_account"
        if cmd.account <= 0:
            detail = "participant account ids are positive"
            return self._custody_reject(cmd, name, E.BAD_PARAM, detail)
        if len(cmd.jurisdiction) != 2:
            detail = "jurisdiction is a two-letter country code"
            return self._custody_reject(cmd, name, E.BAD_PARAM, detail)
        if len(cmd.name) > 200:  # the ledger store's limit
            detail = "account names have at most 200 characters"
            return self._custody_reject(cmd, name, E.BAD_PARAM, detail)
        if cmd.account in self.participants:
            detail = f"account {cmd.account} exists"
            return self._custody_reject(cmd, name, E.ACCOUNT_EXISTS, detail)
        who = Participant(cmd.account, cmd.name, cmd.kyc_approved, cmd.jurisdiction)
        self.participants[cmd.account] = who
        self.events.append(AccountOpened(self.ts, who))
        return None

    def _attest(self, cmd: AttestReserves) -> None:
        name = "attest_reserves"
        if cmd.asset not in self.assets:
            return self._custody_reject(cmd, name, E.UNKNOWN_ASSET, f"unknown asset {cmd.asset}")
        if cmd.asset in self.matured_assets:
            return self._custody_reject(cmd, name, E.ASSET_MATURED, _matured(cmd.asset))
        if cmd.amount < 0:
            return self._custody_reject(cmd, name, E.BAD_PARAM, "reserves cannot be negative")
        latest = self.attestations.get(cmd.asset)
        if latest is not None and cmd.as_of_us < latest.as_of_us:
            detail = older_detail(latest, cmd.as_of_us, self.assets[cmd.asset])
            return self._custody_reject(cmd, name, E.BAD_PARAM, detail)
        if latest is not None and cmd.as_of_us == latest.as_of_us and cmd.amount != latest.amount:
            recorded = Decimal(latest.amount).scaleb(-self.assets[cmd.asset])
            detail = (  # the store holds one amount per asset and moment
                f"{cmd.asset} reserves as of {latest.as_of_us} are recorded as {recorded:f}:"
                " a statement for the same moment cannot say otherwise (a corrected one needs"
                " a later as_of)"
            )
            return self._custody_reject(cmd, name, E.BAD_PARAM, detail)
        attestation = Attestation(cmd.asset, cmd.amount, cmd.as_of_us)
        self.attestations[cmd.asset] = attestation
        self.events.append(ReservesAttested(self.ts, attestation))
        return None

    def _deposit(self, cmd: Deposit) -> None:
        name = "deposit"
        if cmd.amount <= 0:
            return self._custody_reject(cmd, name, E.BAD_PARAM, "deposits are positive")
        if cmd.account not in self.participants:
            detail = f"unknown account {cmd.account}"
            return self._custody_reject(cmd, name, E.UNKNOWN_ACCOUNT, detail)
        if cmd.asset not in self.assets:
            return self._custody_reject(cmd, name, E.UNKNOWN_ASSET, f"unknown asset {cmd.asset}")
        if cmd.asset in self.matured_assets:
            return self._custody_reject(cmd, name, E.ASSET_MATURED, _matured(cmd.asset))
        attestation = self.attestations.get(cmd.asset)
        if attestation is None or self.ts - attestation.as_of_us > self.staleness_max:
            detail = stale_detail(cmd.asset, attestation, self.ts, self.staleness_max)
            return self._custody_reject(cmd, name, E.RESERVES_STALE, detail)
        supply = self.supply(cmd.asset)
        if supply + cmd.amount > attestation.amount:
            scale = self.assets[cmd.asset]
            detail = exceeded_detail(attestation, supply, cmd.amount, scale)
            return self._custody_reject(cmd, name, E.RESERVES_EXCEEDED, detail)
        (minted,) = self._book([(ISSUANCE, cmd.account, cmd.asset, cmd.amount, TransferKind.MINT)])
        self.events.append(
            Deposited(self.ts, cmd.account, cmd.asset, cmd.amount, minted.transfer_id)
        )
        self._report(cmd.account, cmd.asset)
        return None

    def _request_withdrawal(self, cmd: RequestWithdrawal) -> None:
        name = "request_withdrawal"
        if cmd.amount <= 0:
            detail = "withdrawal amounts must be positive"
            return self._custody_reject(cmd, name, E.BAD_PARAM, detail)
        if cmd.account not in self.participants:
            detail = f"unknown account {cmd.account}"
            return self._custody_reject(cmd, name, E.UNKNOWN_ACCOUNT, detail)
        if cmd.asset not in self.assets:
            return self._custody_reject(cmd, name, E.UNKNOWN_ASSET, f"unknown asset {cmd.asset}")
        if sum(1 for w in self.pending.values() if w.account == cmd.account) >= (
            PENDING_WITHDRAWALS_MAX
        ):
            detail = too_many_withdrawals_detail(cmd.account)
            return self._custody_reject(cmd, name, E.BAD_PARAM, detail)
        available = self.available(cmd.account, cmd.asset)
        if available < cmd.amount:
            scale = self.assets[cmd.asset]
            detail = (
                f"account {cmd.account} has {_decimal(available, scale)} {cmd.asset} available,"
                f" {_decimal(cmd.amount, scale)} asked"
            )
            return self._custody_reject(cmd, name, E.INSUFFICIENT_BALANCE, detail)
        self._balance(cmd.account, cmd.asset)[1] += cmd.amount
        self.last_withdrawal_id += 1
        withdrawal = Withdrawal(self.last_withdrawal_id, cmd.account, cmd.asset, cmd.amount)
        self.pending[withdrawal.withdrawal_id] = withdrawal
        self.events.append(WithdrawalRequested(self.ts, withdrawal))
        self._report(cmd.account, cmd.asset)
        return None

    def _confirm_withdrawal(self, cmd: ConfirmWithdrawal) -> None:
        withdrawal = self.pending.pop(cmd.withdrawal_id, None)
        if withdrawal is None:
            detail = f"no pending withdrawal {cmd.withdrawal_id}"
            return self._custody_reject(cmd, "confirm_withdrawal", E.UNKNOWN_WITHDRAWAL, detail)
        account, asset, amount = withdrawal.account, withdrawal.asset, withdrawal.amount
        self._balance(account, asset)[1] -= amount  # the burn spends the hold
        (burned,) = self._book([(account, ISSUANCE, asset, amount, TransferKind.BURN)])
        self.events.append(WithdrawalConfirmed(self.ts, withdrawal, burned.transfer_id))
        self._report(account, asset)
        return None

    def _void_withdrawal(self, cmd: VoidWithdrawal) -> None:
        withdrawal = self.pending.get(cmd.withdrawal_id)
        if withdrawal is None:
            detail = f"no pending withdrawal {cmd.withdrawal_id}"
            return self._custody_reject(cmd, "void_withdrawal", E.UNKNOWN_WITHDRAWAL, detail)
        self._void(withdrawal)
        return None

    def _void(self, withdrawal: Withdrawal) -> None:
        del self.pending[withdrawal.withdrawal_id]
        self._balance(withdrawal.account, withdrawal.asset)[1] -= withdrawal.amount
        self.events.append(WithdrawalVoided(self.ts, withdrawal))
        self._report(withdrawal.account, withdrawal.asset)


def _decimal(units: int, scale: int) -> str:
    """`units` at `scale` as the wire writes it ("5000000.000000"), not via engine.units."""
    return f"{Decimal(units).scaleb(-scale):f}"


def _matured(asset: str) -> str:
    return f"{asset} is a matured T-bill: it was redeemed at par and can never trade again"
