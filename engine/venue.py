"""The venue's state machine: `Venue.execute(command) -> events`, deterministic and pure.

Owns every market (book, status, band, per-order caps, T-bill maturity, scheduled or run
early by an operator), every open order and the indexes over them (by id, by account, by
client order id) with their cancel-on-disconnect marks (`SetCancelOnDisconnect`), the gtd
expiry queue, each account's dead-man's switch (its deadline, fired by the clock's
`AdvanceClock`) and the id counters; the operator's commands pass `engine.operations`, and
with a ledger holds and DvP are `Clearing`'s, custody `Custody`'s, corporate actions
`Corporate`'s. Matching is price-time priority at the maker's price; self-trade prevention
follows the taker's mode. Each command is checked in the order its `*_PRECEDENCE` tuple in
`engine.reasons` lists, and a refused command changes nothing. Before any command runs, gtd
orders whose expiry has come are expired, so no order trades after its expire_at. The same
commands always give the same events and `state_hash()`: time and ids arrive in commands or
come from counters, and every iteration is in insertion order.
"""

import hashlib
from collections.abc import Callable, Iterator
from heapq import heapify, heappop, heappush
from itertools import pairwise
from typing import Any

import msgspec

from engine import invariants
from engine.book import DORMANT_LEVELS_MAX, BookSide, Level, Order, OrderBook
from engine.clearing import Clearing, balance_changed
from engine.closed import SEAL_EVERY_US, ClosedOrders
from engine.commands import (
    AdvanceClock,
    AmendOrder,
    AmendPair,
    ArmDeadMan,
    CancelAll,
    CancelOrder,
    Command,
    ListInstrument,
    MatureInstrument,
    OperatorCommand,
    PlaceOrder,
    RefuseCancelOnDisconnect,
    RefuseUnreadCommand,
    SetCancelOnDisconnect,
    SetInstrumentStatus,
    SetOrderCaps,
    SetReferencePrice,
    SetReserveStaleness,
    ShiftDeadManDeadlines,
)
from engine.corporate import Corporate
from engine.custody import Custody
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
    BalanceChanged,
    CancelOnDisconnectSet,
    CommandRejected,
    DeadManArmed,
    DeadManTriggered,
    Event,
    Fact,
    InstrumentListed,
    InstrumentMatured,
    InstrumentStatusChanged,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderCapsSet,
    OrderExpired,
    ReferencePriceSet,
    ReserveStalenessSet,
    SelfTradePrevented,
    TradeExecuted,
)
from engine.instrument import (
    InstrumentSpec,
    band_limits,
    case_twin_refusal,
    notional_cap_problem,
    unknown_symbol,
)
from engine.market import Market
from engine.once import OnceLimits, OncePlaced
from engine.operations import OPERATIONS_RECENT_MAX, Operations
from engine.reasons import ErrorCode
from engine.units import (
    SMALL_INT_MAX,
    UNITS_MAX,
    format_units,
    unit_slip,
)
from settlement.dvp import BPS
from settlement.ledger import Ledger
from settlement.transfers import TransferKind

# The default reserve staleness bound (`VenueConfig`) and the most one may be set to:
# custodians attest daily, with two hours of grace; venue.toml's 1,000,000 hours.
RESERVE_STALENESS_DEFAULT_US = 26 * 3_600_000_000
RESERVE_STALENESS_MAX_US = 1_000_000 * 3_600_000_000
DUE_NEVER_US = 2**63  # later than any time a command can carry: nothing is due
# The `CommandRejected.command` of a command a cluster's core could not read
# (`RefuseUnreadCommand`): what every build has answered and counted it by, kept as it is
REFUSED_UNREAD = "refuse_unread_command"
CL_ORD_ID_LENGTH_MAX = 36  # the protocol's bound on client ids
TAG_LENGTH_MAX = 36  # same bound for free-form tags
QUOTE_SET_LENGTH_MAX = 64  # the protocol's bound on quote set names
# The protocol's bound on `orders.cancel_after` (a switch longer than 10 minutes protects
# nothing); the engine keeps it too, so that no command can arm one for longer.
DEAD_MAN_TIMEOUT_MS_MAX = 600_000

# Hot-path aliases: a module global is one dict lookup, an enum member two.
BUY = Side.BUY
SELL = Side.SELL
LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET
GTC = TimeInForce.GTC
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK
GTD = TimeInForce.GTD
STP_NONE = SelfTradePrevention.NONE
EXPIRE_TAKER = SelfTradePrevention.EXPIRE_TAKER
EXPIRE_MAKER = SelfTradePrevention.EXPIRE_MAKER
EXPIRE_BOTH = SelfTradePrevention.EXPIRE_BOTH
NEW = OrderStatus.NEW
PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
FILLED = OrderStatus.FILLED
CANCELED = OrderStatus.CANCELED
OPEN = InstrumentStatus.OPEN
CANCEL_ONLY = InstrumentStatus.CANCEL_ONLY
IOC_REST = CancelReason.IOC_REST
STP_MODES = frozenset(SelfTradePrevention)
TRADING_STATUSES = frozenset((InstrumentStatus.OPEN, InstrumentStatus.POST_ONLY))
E = ErrorCode
_ONCE_LIMITS_DEFAULT = OnceLimits()


class VenueConfig(msgspec.Struct, frozen=True):
    # A market maker quoting 20 levels a side on 50 symbols needs 2,000; 10x leaves room.
    open_orders_per_account_max: int = 20_000
    # How many closed orders still answer ORDER_NOT_OPEN rather than UNKNOWN_ORDER:
    # about a minute of heavy flow, at a few dozen bytes each.
    closed_orders_retained_max: int = 1_000_000
    # Custodians attest daily; two hours of grace before minting stops on an old statement.
    # Part of the state: changed only by `SetReserveStaleness` once the venue runs.
    reserve_staleness_max_us: int = RESERVE_STALENESS_DEFAULT_US
    # How many of the newest operator commands' `cl_op_id`s are kept whole before they are
    # compacted (`engine.operations`: every one is remembered).
    operations_recent_max: int = OPERATIONS_RECENT_MAX
    # 0: every `cl_op_id` is remembered (the rule). Else only the newest this many, the older
    # forgotten: the rule a journal begun before `SetReserveStaleness` ran under until its
    # first one (`OPERATIONS_RETAINED_LEGACY`; images of then hold it), so that its replay
    # runs as it ran. `SetReserveStaleness` sets it to 0; never set otherwise.
    operations_retained_max: int = 0
    # How long and how many `once` places are remembered (`engine.once`): they decide
    # refusals, so a journal replays under the limits it ran under.
    once_limits: OnceLimits = OnceLimits()


class Venue:
    """Markets and orders of the whole venue, changed only by `execute`.

    Past 400 lines for a measured reason: placing, matching, amending and canceling share
    the books, the order indexes and the counters, and they are the engine's hot path, where
    each call or attribute hop to another object costs per command (docs/engine.md,
    callgrind). What is off that path lives beside it: holds and DvP (`Clearing`), custody,
    corporate actions, closed orders, the checks' precedence (`engine.reasons`)."""

    def __init__(self, config: VenueConfig | None = None, ledger: Ledger | None = None) -> None:
        self.config = config or VenueConfig()
        self.ledger = ledger
        self.clearing = Clearing(ledger) if ledger is not None else None
        self.markets: dict[str, Market] = {}
        self.orders: dict[int, Order] = {}
        self.account_orders: dict[int, dict[int, Order]] = {}
        self.cl_ord_index: dict[tuple[int, str], Order] = {}
        self.closed_orders = ClosedOrders(self.config.closed_orders_retained_max)
        self.once_placed = OncePlaced(self.config.once_limits)  # for at-most-once retries
        self.gtd_queue: list[tuple[int, int]] = []  # heap of (expire_at_us, order_id)
        self.last_order_id = 0
        self.ts_us = 0
        # Where the last `AmendPair`'s ask events begin in its events: how its outcome is
        # split back into the two amends' (derived from the command: neither hashed nor kept)
        self.pair_split = 0
        self._open_orders_max = self.config.open_orders_per_account_max
        self._handlers: dict[type[Command], Callable[[Any, list[Event]], None]] = {
            PlaceOrder: self._place,
            CancelOrder: self._cancel,
            AmendOrder: self._amend,
            CancelAll: self._cancel_all,
            ListInstrument: self._list_instrument,
            SetInstrumentStatus: self._set_status,
            SetReferencePrice: self._set_reference_price,
            SetOrderCaps: self._set_order_caps,
            MatureInstrument: self._mature_instrument,
            AdvanceClock: self._advance_clock,
            ArmDeadMan: self._arm_dead_man,
            SetCancelOnDisconnect: self._set_cancel_on_disconnect,
            SetReserveStaleness: self._set_reserve_staleness,
            RefuseUnreadCommand: self._refuse_unread,
            ShiftDeadManDeadlines: self._shift_dead_man_deadlines,
            RefuseCancelOnDisconnect: self._refuse_cancel_on_disconnect,
            AmendPair: self._amend_pair,
        }
        self.maturities: list[tuple[int, str]] = []  # heap of T-bill (maturity_us, symbol)
        self._due_us = 0  # see `note_due`; the first command sets it
        # Armed dead-man's switches, account -> deadline (one per account, so bounded by the
        # accounts), and a heap of (deadline, account) whose head is always an armed switch,
        # for the clock's tick (`Sequencer.tick`). A re-armed or disarmed switch leaves its
        # entry behind, dropped once it is the head (`_drop_disarmed_heads`).
        self.dead_man_deadlines: dict[int, int] = {}
        self.dead_man_queue: list[tuple[int, int]] = []
        # The tokens of matured bills: derived from the markets (matured flag and base), so
        # it is neither hashed nor snapshotted; custody refuses reserves and mints of them.
        self.matured_assets: set[str] = set()
        if ledger is not None:
            self.custody = Custody(
                ledger, self.config.reserve_staleness_max_us, self.matured_assets, self.markets
            )
            self._handlers.update(self.custody.handlers())
            self.corporate = Corporate(self, ledger)  # dividends and splits
            self._handlers.update(self.corporate.handlers())
        # Every operator command is done at most once per `cl_op_id`: checked here, where the
        # operator's commands enter, before their own checks (`engine.operations`).
        self.operations = Operations(
            self.config.operations_recent_max, self.config.operations_retained_max
        )
        for kind, handler in list(self._handlers.items()):
            if issubclass(kind, OperatorCommand):
                self._handlers[kind] = self.operations.guard(handler)

    # ----------------------------------------------------------------- entry point

    def execute(self, command: Command) -> list[Event]:
        """Apply one command and return what happened, in order."""
        ts = command.ts_us
        assert ts >= self.ts_us, f"time went backwards: {ts} < {self.ts_us}"
        self.ts_us = ts
        events: list[Event] = []
        if ts >= self._due_us:  # a gtd expiry or a maturity may have come
            self._run_due(ts, events)
        self._handlers[type(command)](command, events)
        return events

    def note_due(self, at_us: int) -> None:
        """Something is queued to happen at `at_us` (a gtd expiry, a maturity).

        `_due_us` is never later than the earliest entry of either queue nor than the next
        seal of the closed-order memory, so `execute` looks at them only once time reaches
        it: one comparison per command.
        """
        if at_us < self._due_us:
            self._due_us = at_us

    def next_due_us(self) -> int:
        """When the earliest gtd expiry, maturity or dead-man's switch is due (`DUE_NEVER_US`
        if none): the time an `AdvanceClock` has work from (`Sequencer.tick`)."""
        return min(
            self.gtd_queue[0][0] if self.gtd_queue else DUE_NEVER_US,
            self.maturities[0][0] if self.maturities else DUE_NEVER_US,
            self.next_switch_due_us(),
        )

    def next_switch_due_us(self) -> int:
        """When the earliest armed dead-man's switch is due (`DUE_NEVER_US` if none): the
        head of `dead_man_queue` is always an armed one."""
        queue = self.dead_man_queue
        return queue[0][0] if queue else DUE_NEVER_US

    def _run_due(self, ts: int, events: list[Event]) -> None:
        """Expire the gtd orders and mature the bills whose time has come, in that order; seal
        the closed-order memory's chunk if it is full (see `engine.closed`)."""
        queue = self.gtd_queue
        if queue and queue[0][0] <= ts:
            self._expire_due(ts, events)
        maturities = self.maturities
        if maturities and maturities[0][0] <= ts:
            self._mature_due(ts, events)
        self.closed_orders.seal_if_full()
        queue, maturities = self.gtd_queue, self.maturities
        self._due_us = min(
            queue[0][0] if queue else DUE_NEVER_US,
            maturities[0][0] if maturities else DUE_NEVER_US,
            ts + SEAL_EVERY_US,
        )

    # ----------------------------------------------------------------- queries

    def book(self, symbol: str) -> OrderBook:
        return self.markets[symbol].book

    def open_orders(self, account: int) -> list[Order]:
        return list(self.account_orders.get(account, {}).values())

    def find_order(self, account: int, order_id: int, cl_ord_id: str | None) -> Order | None:
        """The account's open order by id or client id; other accounts' orders are invisible."""
        if cl_ord_id is not None:
            return self.cl_ord_index.get((account, cl_ord_id))
        order = self.orders.get(order_id)
        return order if order is not None and order.account == account else None

    def cod_order_ids(self) -> list[int]:
        """The open orders marked `cod`, by id: what a start after a crash cancels (reason
        cod), as the close of the connections they were placed on would have."""
        return sorted(order_id for order_id, order in self.orders.items() if order.cod)

    def adopt_resting(self, orders: list[Order]) -> None:
        """Put resting orders back, as restored from a snapshot.

        `orders` come in each book's priority order; the indexes are rebuilt in order of
        acceptance (order id), as they were first built, so that account-wide iteration
        (cancel all) visits orders in the same order as before the snapshot.
        """
        for order in orders:
            book = self.markets[order.symbol].book
            (book.bids if order.side is BUY else book.asks).add(order)
        for order in sorted(orders, key=lambda o: o.order_id):
            self._index(order)

    def state_hash(self) -> str:
        """A digest of everything that decides future events; equal states, equal hashes."""
        return hashlib.blake2b(msgspec.msgpack.encode(self._state()), digest_size=32).hexdigest()

    def check_invariants(self) -> None:
        """Assert every whole-state invariant; a failure is a bug (see engine.invariants)."""
        invariants.check_venue(self)

    def _state(self) -> list[object]:
        markets = [
            [
                market.spec,
                market.status,
                market.reference_price,
                market.last_trade_id,
                market.matured,
                [_order_state(order) for order in market.book.iter_orders()],
            ]
            for _, market in sorted(self.markets.items())
        ]
        closed = list(self.closed_orders.items())
        ledger = None
        if self.ledger is not None:  # balances decide future events too
            ledger = msgspec.structs.replace(self.ledger.image(), undrained=[])
        state: list[object] = [self.ts_us, self.last_order_id, markets, closed, ledger]
        if self.dead_man_deadlines:  # only then: a venue without one hashes as it always did
            state.append(sorted(self.dead_man_deadlines.items()))
        operations = self.operations
        if operations:  # the same: only once an operator gave a `cl_op_id`
            kept: list[object] = ["operations", operations.image()]
            if operations.archive.count:  # the same again: only once some are compacted
                kept.append(operations.archive)
            state.append(kept)
        staleness_us = self.config.reserve_staleness_max_us
        if staleness_us != RESERVE_STALENESS_DEFAULT_US:  # it decides deposits; the same
            state.append(["reserve_staleness", staleness_us])
        if self.config.operations_retained_max:  # it decides repeats; the same
            state.append(["operations_retained", self.config.operations_retained_max])
        if self.config.once_limits != _ONCE_LIMITS_DEFAULT:  # it decides them; the same
            state.append(["once_limits", self.config.once_limits])
        if self.once_placed:  # it decides once places; the same: only after the first
            state.append(["once_placed", self.once_placed.image()])
        return state

    # ----------------------------------------------------------------- place

    def _place(self, cmd: PlaceOrder, events: list[Event]) -> None:
        account = cmd.account
        side = cmd.side
        price = cmd.price
        qty = cmd.qty
        tif = cmd.tif
        cl_ord_id = cmd.cl_ord_id
        tag = cmd.tag
        # A subscript in a `try`, not `get`: the try costs nothing until a symbol is unknown,
        # and a subscript ~80 instructions less than a method call. An unknown symbol takes
        # the checks one by one at once, so that the expression below need not test it.
        try:
            market = self.markets[cmd.symbol]
        except KeyError:
            self._place_refused(cmd, None, events)  # refused: malformed or unknown symbol
            return None
        clearing = self.clearing
        by_account = self.account_orders.get(account)
        # The common order, a gtc or ioc limit that passes every check, passes in these two
        # expressions (the hot path of every order: the checks one by one cost twice as
        # much). False says only "look closer": `_place_shape_problem` and `_place_refusal`
        # then find the first reason in precedence order, or none (a gtd, fok, post-only or
        # market order). `Market` folds the bounds: see `qty_max_plain` and the others.
        # Two expressions with the same body, not one: each keeps its jumps to the body short
        # (~50 instructions less per order: no EXTENDED_ARG before a jump, and a compare
        # specialises only when a short jump follows it). The numeric compares come last all
        # the same (see `_amend`). They are not chained: `a <= b <= c` costs a SWAP, a COPY
        # and a jump more than `a <= b and b <= c`. The open-order cap is tested before the
        # tif: most orders rest.
        if not (
            cmd.order_type is LIMIT
            and (tif is GTC or tif is IOC)
            and not (cmd.quote_qty or cmd.post_only or cmd.expire_at_us or cmd.once)
            and cmd.quote_set is None  # a quote is post-only: checked one by one anyway
            # The default mode first: `is` costs ~100 instructions less than a set lookup.
            and (cmd.stp is EXPIRE_TAKER or cmd.stp in STP_MODES)
            and market.status is OPEN
            and (cl_ord_id is None or self._new_cl_ord_id(account, cl_ord_id))
            and (tag is None or 0 < len(tag) <= TAG_LENGTH_MAX)
        ):  # take the checks one by one
            position = None  # not looked up (see the hold below)
            if self._place_refused(cmd, market, events):
                return None
            plain = False
        elif not (
            (
                clearing is None  # `Clearing.eligible` inline: one call less per order
                # An account that placed an order here was eligible then and stays so
                # (participants and specs never change): its remembered position, needed
                # below, says so.
                or (position := market.positions.get(account)) is not None
                or (
                    (participant := clearing.participants.get(account)) is not None
                    and participant.kyc_approved
                    and participant.jurisdiction not in market.spec.excluded_jurisdictions
                )
            )
            # An account with open orders passed `account > 0` when it placed them.
            and (
                account > 0
                if by_account is None
                else len(by_account) < self._open_orders_max or tif is IOC
            )
            and (
                price > 0 and price <= market.buy_price_max
                if side is BUY
                else side is SELL and market.band_low <= price and price <= SMALL_INT_MAX
            )
            and market.min_qty <= qty
            and qty <= market.qty_max_plain
            and (
                market.steps_and_notional_free
                or (
                    (market.unit_steps or not (price % market.price_tick or qty % market.qty_step))
                    and (
                        market.notional_free
                        or market.min_notional_scaled
                        <= price * qty * market.notional_num
                        <= market.notional_max_plain
                    )
                )
            )
        ):  # take the checks one by one
            position = None  # perhaps not looked up (see the hold below)
            if self._place_refused(cmd, market, events):
                return None
            plain = False
        else:
            # A gtc or ioc limit, not post-only, without quote_qty, expire_at or quote set:
            # the tests below for other orders (market, fok, gtd) are skipped at one jump.
            plain = True
        hold = 0
        if clearing is not None:  # the order must be able to hold what it could spend
            if side is not BUY:  # a sell holds what it may deliver
                asset = market.spec.base
                hold = qty
            elif cmd.order_type is LIMIT and market.terms is not None:
                asset = market.spec.quote
                terms = market.terms
                # `CashTerms.buy_hold` written out (cost and worst fee, each rounded up): one
                # call less per buy.
                cost = price * terms.num * qty  # qty last: see `CashTerms.buy_hold`
                hold = (cost + terms.den_up) // terms.den + (
                    cost * terms.fee_bps_max + terms.fee_up
                ) // terms.den // BPS
            else:
                asset = market.spec.quote
                hold = clearing.place_hold(market, side, cmd.order_type, price, qty, cmd.quote_qty)
            # The balance to hold from, looked up here: every order on the venue path comes here.
            # It is in the account's remembered position (base, quote), looked up by the
            # eligibility check of the one expression above; remembered here at the account's
            # first order (an order taking the checks one by one has None and looks again),
            # by key while the account lacks one of the assets. Constant indexes: a subscript
            # by `side is BUY` would take the interpreter's generic path.
            if position is None:  # the account is eligible: it passed the checks
                position = clearing.position(market, account)
            if position is None:  # it lacks the other asset: by key
                balance = clearing.balances.get((account, asset))
            elif side is BUY:
                balance = position[1]
            else:
                balance = position[0]
            if balance is None or balance.total - balance.held < hold:
                # What is available read in the call, not into a local: every local of
                # `_place` costs each order (see `_place_refused`).
                return self._reject_short(
                    events,
                    cmd,
                    "place_order",
                    market,
                    side,
                    hold,
                    clearing.available(account, asset),
                )
            # Past here `balance` is the one the order holds from; without a ledger it is
            # never bound (nothing reads it: the order holds nothing).

        book = market.book
        # Both sides at once: the order rests on `own` if it does not fill. A limit reaches the
        # key of its price on `opposite`, set here with the side: the price on the asks, minus
        # it on the bids (no multiplication by `opposite.sign`: 3 bytecodes and an int less).
        if side is BUY:
            own = book.bids
            opposite = book.asks
            limit_key = price
        else:
            own = book.asks
            opposite = book.bids
            limit_key = -price
        if not plain and cmd.order_type is not LIMIT:  # a market order reaches the band
            limit_key = (market.band_high if side is BUY else market.band_low) * opposite.sign
        best = opposite.best
        # A conditional, not the bool itself: a compare followed by a jump specialises.
        crosses = True if best is not None and best.key <= limit_key else False  # noqa: SIM210
        if crosses:
            if cmd.post_only:
                return self._reject(
                    events, cmd, "place_order", E.POST_ONLY_WOULD_TAKE, "the order would take"
                )
            # A sell may trade at bids above its price: what could it trade there? Small-int
            # compares first, `crosses` says `best` is a level (no None test: 4 bytecodes).
            if (
                side is not BUY
                and (
                    qty > SMALL_INT_MAX or best.price > market.sell_take_price_plain  # type: ignore[union-attr]
                )
                and self._refused_sell_value(cmd, market, events)
            ):
                return None
        if not plain:
            if tif is FOK and not _fillable(opposite, limit_key, qty, account, cmd.stp):
                return self._reject(
                    events, cmd, "place_order", E.FOK_NOT_FILLABLE, "not enough liquidity"
                )
            if cmd.order_type is not LIMIT and not crosses:
                return self._reject(
                    events,
                    cmd,
                    "place_order",
                    E.MARKET_NO_LIQUIDITY,
                    "nothing to trade within the band",
                )
            if cmd.once:  # accepted below: remembered under the id it gets there
                assert cl_ord_id is not None, "a once place without a cl_ord_id passed"
                self.once_placed.add(cmd.ts_us, account, cl_ord_id, self.last_order_id + 1)

        self.last_order_id = order_id = self.last_order_id + 1
        # The command's other fields are read where used: a local read only twice costs
        # more bytecodes than reading the field twice.
        order = Order(
            order_id,
            account,
            cmd.symbol,
            side,
            cmd.order_type,
            tif,
            price,
            qty,
            qty,
            0,
            0,
            cmd.post_only,
            cmd.stp,
            cl_ord_id,
            tag,
            cmd.expire_at_us,
            NEW,
            hold,  # zero without a ledger
            0,  # fee_exact
            0,  # fees_paid
            cmd.quote_set,  # positional like the rest: a keyword costs a name match per order
            cmd.cod,
        )
        events.append(
            OrderAccepted(
                cmd.ts_us,
                order_id,
                account,
                cmd.symbol,
                side,
                cmd.order_type,
                tif,
                price,
                qty,
                cmd.quote_qty,
                cmd.post_only,
                cmd.stp,
                cl_ord_id,
                tag,
                cmd.expire_at_us,
            )
        )
        if clearing is not None:  # the order holds `hold` from `balance`: every order comes here
            assert hold > 0 and balance is not None, f"{order} holds nothing"
            balance.held += hold
            events.append(BalanceChanged(cmd.ts_us, account, asset, balance.total, balance.held))
        if not crosses or self._match(market, order, opposite, limit_key, cmd.quote_qty, events):
            # It rests: a limit (a market order is ioc or fok, see `_place_shape_problem`).
            if tif is GTC or tif is GTD:
                if crosses:
                    self._release_improvement(order, market, events)
                    # Matching may have closed the account's last order: look again.
                    by_account = self.account_orders.get(account)
                # `_rest`, `BookSide.add` and `_index` inline: every resting order comes here.
                key = -limit_key  # a limit's key on its own side: its price times own.sign
                level = own.levels.get(key)
                if level is None:
                    level = own.new_level(price, key)
                level.orders[order_id] = order
                level.qty += order.leaves_qty
                self.orders[order_id] = order
                if by_account is None:
                    by_account = self.account_orders[account] = {}
                by_account[order_id] = order
                if cl_ord_id is not None:
                    self.cl_ord_index[(account, cl_ord_id)] = order
                if not plain and tif is GTD:
                    self._queue_expiry(order)
                return None
            # The rest of an ioc (or a market or fok order) is canceled. The order's own
            # leaves_qty and status are left as they were, as `_cancel` leaves them: nothing
            # reads it again (the event says what it became).
            events.append(
                OrderCanceled(
                    cmd.ts_us,
                    order_id,
                    account,
                    cmd.symbol,
                    IOC_REST,
                    order.leaves_qty,
                    order.cum_qty,
                )
            )
        # Closed without resting (canceled above, or filled, expired by STP or its budget spent
        # in matching): `_retire` inline, a call less for every taker. It is in no index, and
        # releases what it still holds into `balance`, the one it held from (`Clearing.release`
        # would look it up again).
        hold = order.hold
        if hold:
            assert balance is not None, f"{order} holds funds without a ledger"
            assert hold <= balance.held, f"release {hold} of {balance.held} held"
            balance.held -= hold
            events.append(BalanceChanged(cmd.ts_us, account, asset, balance.total, balance.held))
        self.closed_orders.filling[order_id] = account  # as in `_cancel`
        return None

    def _place_refused(self, cmd: PlaceOrder, market: Market | None, events: list[Event]) -> bool:
        """Whether the order is refused (reported), its checks taken one by one in precedence
        order: a malformed order, an unknown symbol, then `_place_refusal`.

        Out of `_place` for its locals: every local of a function costs each call of it ~8
        instructions (set to nothing as the frame starts, released as it ends).
        """
        problem = _place_shape_problem(cmd)
        if problem is not None:
            self._reject(events, cmd, "place_order", E.BAD_PARAM, problem)
            return True
        if cmd.once and self._once_refused(cmd, events):
            return True
        if market is None:
            detail = unknown_symbol(cmd.symbol, self.markets)
            self._reject(events, cmd, "place_order", E.UNKNOWN_SYMBOL, detail)
            return True
        reason = self._place_refusal(cmd, market)
        if reason is None:
            return False
        code, detail = reason
        account, cl_ord_id = cmd.account, cmd.cl_ord_id
        order_id = 0
        if code is E.DUPLICATE_CL_ORD_ID:  # the open order that holds it
            assert cl_ord_id is not None, "a duplicate without a cl_ord_id"
            order_id = self.cl_ord_index[(account, cl_ord_id)].order_id
        facts = _refusal_facts(
            code, market, cmd.side, cmd.order_type, cmd.price, cmd.qty, cmd.quote_qty
        )
        self._reject(events, cmd, "place_order", code, detail, order_id, facts)
        return True

    def _once_refused(self, cmd: PlaceOrder, events: list[Event]) -> bool:
        """Whether a `once` place ran already (refused, reported, naming the first order).

        Its first business check: a retry learns that its first ran, not a reason that came
        up since (a halt, an amend that took the cl_ord_id), nor one the first passed."""
        cl_ord_id = cmd.cl_ord_id
        assert cl_ord_id is not None, "a once place without a cl_ord_id passed"
        first = self.once_placed.first(cmd.account, cl_ord_id, cmd.ts_us)
        if not first:
            return False
        detail = f"cl_ord_id {cl_ord_id!r} was placed once already"
        self._reject(events, cmd, "place_order", E.DUPLICATE_CL_ORD_ID, detail, first)
        return True

    def _refused_sell_value(self, cmd: PlaceOrder, market: Market, events: list[Event]) -> bool:
        """Whether a crossing sell is refused (NOTIONAL_OUT_OF_RANGE, reported) because at
        the best bid it could trade past `order_value_max`."""
        best = market.book.bids.best
        assert best is not None, "a crossing sell with no bid"
        if not market.above_value_max(best.price, cmd.qty):
            return False
        facts = _value_facts(market, best.price, cmd.qty, 0)
        detail = "notional at the best bid is past what the venue can account"
        code = E.NOTIONAL_OUT_OF_RANGE
        self._reject(events, cmd, "place_order", code, detail, 0, facts)
        return True

    def _new_cl_ord_id(self, account: int, cl_ord_id: str) -> bool:
        """Whether `cl_ord_id` is well formed and names none of the account's open orders."""
        return (
            0 < len(cl_ord_id) <= CL_ORD_ID_LENGTH_MAX
            and (account, cl_ord_id) not in self.cl_ord_index
        )

    def _place_refusal(self, cmd: PlaceOrder, market: Market) -> tuple[ErrorCode, str] | None:
        """The first business reason to refuse a well-formed order, in precedence order."""
        if market.status is not OPEN and (
            market.status is not InstrumentStatus.POST_ONLY or not cmd.post_only
        ):
            return _status_refusal(market)
        if self.clearing is not None and not self.clearing.eligible(cmd.account, market.spec):
            return E.NOT_ELIGIBLE, f"account {cmd.account} may not trade {market.symbol}"
        tif = cmd.tif
        if tif is GTD and cmd.expire_at_us <= cmd.ts_us:
            return E.INVALID_EXPIRE_AT, _expire_at_problem(cmd.expire_at_us, cmd.ts_us)
        if cmd.cl_ord_id is not None and (cmd.account, cmd.cl_ord_id) in self.cl_ord_index:
            return E.DUPLICATE_CL_ORD_ID, f"cl_ord_id {cmd.cl_ord_id!r} is in use"
        price = cmd.price
        qty = cmd.qty
        if price % market.price_tick:
            return E.INVALID_PRICE_TICK, "price is not on the tick"
        if qty % market.qty_step:
            return E.INVALID_QTY_STEP, "qty is not a multiple of the step"
        if qty < market.min_qty and not cmd.quote_qty:
            return E.BELOW_MIN_QTY, "qty is below the minimum"
        if market.max_qty and qty > market.max_qty:
            return E.ABOVE_MAX_QTY, "qty is above the per-order maximum"
        if cmd.order_type is LIMIT:
            if price > market.band_high if cmd.side is BUY else price < market.band_low:
                return E.PRICE_BAND, "price is outside the band"
            if price * qty * market.notional_num < market.min_notional_scaled:
                return E.BELOW_MIN_NOTIONAL, "notional is below the minimum"
            cap = market.max_notional_scaled  # inline: a method call costs on every order
            if cap and price * qty * market.notional_num > cap:
                return E.ABOVE_MAX_NOTIONAL, "notional is above the per-order maximum"
            if market.above_value_max(price, qty):
                return E.NOTIONAL_OUT_OF_RANGE, "notional is past what the venue can account"
            if (tif is GTC or tif is GTD) and len(
                self.account_orders.get(cmd.account, ())
            ) >= self._open_orders_max:
                return E.TOO_MANY_OPEN_ORDERS, "the account has too many open orders"
        elif cmd.quote_qty:
            if cmd.quote_qty < market.min_notional:
                return E.BELOW_MIN_NOTIONAL, "quote_qty is below the minimum notional"
            if cmd.budget_checked and _step_cost_above(market, cmd.quote_qty):
                return E.BELOW_MIN_NOTIONAL, "quote_qty buys not one step at the best ask"
            if market.max_notional_scaled and cmd.quote_qty > market.spec.max_notional:
                return E.ABOVE_MAX_NOTIONAL, "quote_qty is above the per-order maximum notional"
            if market.above_value_max(_quote_value(market, cmd.quote_qty), 1):
                return E.NOTIONAL_OUT_OF_RANGE, "quote_qty is past what the venue can account"
        elif market.below_min_notional(market.reference_price, qty):
            return E.BELOW_MIN_NOTIONAL, "notional at the reference price is below the minimum"
        elif market.above_max_notional(market.band_high, qty):
            # A market order may trade up to the band's high: the most it could be worth.
            return E.ABOVE_MAX_NOTIONAL, "notional at the band's high is above the maximum"
        elif market.above_value_max(market.band_high, qty):
            return (
                E.NOTIONAL_OUT_OF_RANGE,
                "notional at the band's high is past what the venue can account",
            )
        return None

    # ----------------------------------------------------------------- matching

    def _match(
        self,
        market: Market,
        taker: Order,
        opposite: BookSide,
        limit_key: int,
        quote_qty: int,
        events: list[Event],
    ) -> bool:
        """Trade `taker` against `opposite` up to `limit_key`; True if it is still open.

        With `quote_qty` (a market buy by amount), the order buys whole steps while the
        exact cost stays within `quote_qty`, and is done once one more step is beyond it.
        """
        ts = self.ts_us
        clearing = self.clearing
        symbol = market.symbol
        taker_id = taker.order_id
        taker_account = taker.account
        taker_side = taker.side
        stp = taker.stp
        step = market.qty_step
        num = market.notional_num
        quote_left = quote_qty * market.notional_den  # exact budget, in 1/den quote units
        last_price = 0
        open_after = True
        matching = True
        # The taker's running totals, kept in locals and written back once after matching
        # (a store on a msgspec struct is never specialised, ~280 instructions each).
        taker_leaves = taker.leaves_qty
        taker_cum = taker.cum_qty
        taker_value = taker.filled_value
        taker_status = taker.status
        while matching:
            level = opposite.best
            if level is None or level.key > limit_key:
                break
            price = level.price
            gone: list[Order] = []
            for maker in level.orders.values():
                if maker.account == taker_account and stp is not STP_NONE:
                    if stp is not EXPIRE_TAKER:  # expire_maker or expire_both
                        self._prevent(maker, Liquidity.MAKER, taker_id, level, events)
                        gone.append(maker)
                    if stp is not EXPIRE_MAKER:  # expire_taker or expire_both
                        taker.leaves_qty = taker_leaves  # what `_prevent` reports and expires
                        taker.cum_qty = taker_cum
                        taker.filled_value = taker_value
                        self._prevent(taker, Liquidity.TAKER, maker.order_id, None, events)
                        open_after = matching = False
                        break
                    continue
                if quote_qty:
                    qty = quote_left // (price * num) // step * step
                    if not qty:  # the budget buys no whole step at this price
                        matching = False
                        break
                    if qty > maker.leaves_qty:
                        qty = maker.leaves_qty
                else:
                    qty = taker_leaves
                    if qty > maker.leaves_qty:
                        qty = maker.leaves_qty
                maker_leaves = maker.leaves_qty - qty
                maker_cum = maker.cum_qty + qty
                level.qty -= qty
                taker_cum += qty
                taker_value += price * qty
                if maker_leaves:
                    maker_status = PARTIALLY_FILLED
                else:
                    maker_status = FILLED
                    gone.append(maker)
                # A maker filled in full leaves the book below and nothing reads it again but
                # a ledger's release (its hold): its fields are left as they were, as a cancel
                # leaves them (a store on a msgspec struct is never specialised, ~280
                # instructions each; the event says what it became), and a ledger's
                # settlement is given its value.
                if maker_leaves:
                    maker.leaves_qty = maker_leaves
                    maker.cum_qty = maker_cum
                    maker.filled_value = maker_value = maker.filled_value + price * qty
                    maker.status = maker_status
                elif clearing is not None:
                    maker_value = maker.filled_value + price * qty
                if quote_qty:
                    # Later levels only cost more, so a budget short of one step here is spent.
                    quote_left -= price * qty * num
                    done = quote_left < price * num * step
                else:
                    taker_leaves -= qty
                    done = not taker_leaves
                taker_status = FILLED if done else PARTIALLY_FILLED
                market.last_trade_id = trade_id = market.last_trade_id + 1
                last_price = price
                events.append(
                    TradeExecuted(
                        ts,
                        symbol,
                        trade_id,
                        price,
                        qty,
                        taker_side,
                        maker.order_id,
                        maker.account,
                        maker_leaves,
                        maker_cum,
                        maker_status,
                        taker_id,
                        taker_account,
                        taker_leaves,
                        taker_cum,
                        taker_status,
                    )
                )
                if clearing is not None:  # given both values: see `Clearing.settle`
                    clearing.settle(
                        market,
                        maker,
                        maker_leaves,
                        maker_value,
                        taker,
                        done,
                        taker_value,
                        price,
                        qty,
                        trade_id,
                        ts,
                        events,
                    )
                if done:
                    open_after = matching = False
                    break
            orders = level.orders
            closed = self.closed_orders
            for maker in gone:  # `_retire` inline: a call less per maker filled or expired
                maker_id = maker.order_id
                maker_account = maker.account
                del orders[maker_id]
                if maker.hold:
                    clearing.release(maker, market, ts, events)  # type: ignore[union-attr]
                del self.orders[maker_id]  # a resting maker is always indexed
                by_account = self.account_orders[maker_account]
                del by_account[maker_id]
                if not by_account:
                    del self.account_orders[maker_account]
                if maker.cl_ord_id is not None:
                    del self.cl_ord_index[(maker_account, maker.cl_ord_id)]
                # `ClosedOrders.add` inline; unlike `_cancel`, it tests the size at each
                # close: one sweep may close any number of makers.
                closing = closed.filling
                closing[maker_id] = maker_account
                if len(closing) >= closed.chunk_size:
                    closed.seal()
            if not orders:
                opposite.drop_level(level)
        # The taker's totals, if it traded and they are read again: it rests or is canceled
        # (open). Filled it is retired unread, as a filled maker is (a release reads its hold
        # alone); expired by STP it was written before `_prevent`.
        if last_price and open_after:
            taker.leaves_qty = taker_leaves
            taker.cum_qty = taker_cum
            taker.filled_value = taker_value
            taker.status = taker_status
        if last_price and last_price != market.reference_price:
            market.set_reference_price(last_price)
        return open_after

    def _prevent(
        self,
        order: Order,
        liquidity: Liquidity,
        counter_order_id: int,
        level: Level | None,
        events: list[Event],
    ) -> None:
        """Expire `order` for self-trade prevention; the caller takes it out of the book."""
        prevented = order.leaves_qty
        if level is not None:
            level.qty -= prevented
        order.leaves_qty = 0
        order.status = OrderStatus.EXPIRED
        events.append(
            SelfTradePrevented(
                self.ts_us,
                order.order_id,
                order.account,
                order.symbol,
                prevented,
                order.cum_qty,
                liquidity,
                counter_order_id,
            )
        )

    # ----------------------------------------------------------------- cancel

    def _cancel(self, cmd: CancelOrder, events: list[Event]) -> None:
        order_id = cmd.order_id
        account = cmd.account
        cl_ord_id = cmd.cl_ord_id
        # `find_order` inline, through the account's own index: it holds no other account's
        # order (no test of the owner), and `pop` finds the order and takes it out of that
        # index in one lookup (a get here and a del below cost ~250 instructions more).
        # Subscripts in a `try`, not `get` (see `_place`): a cancel names an open order, so the
        # account has an index and the order is in it; a miss is the refusal path.
        if cl_ord_id is None and order_id > 0:
            try:
                by_account = self.account_orders[account]
                order = by_account.pop(order_id)
            except KeyError:
                return self._reject_missing(events, cmd, "cancel_order")
        elif cl_ord_id is not None and order_id == 0:
            try:
                order = self.cl_ord_index[(account, cl_ord_id)]
            except KeyError:
                return self._reject_missing(events, cmd, "cancel_order")
            by_account = self.account_orders[account]  # an open order's account has an index
            del by_account[order.order_id]
        else:
            return self._reject(
                events, cmd, "cancel_order", E.BAD_PARAM, "give exactly one of order_id, cl_ord_id"
            )
        # The order's own id object is the key of every index that holds it: a dict finds a
        # key by identity before it compares values (three int compares less per cancel).
        order_id = order.order_id
        # `_cancel_open` and `_retire` inline: two calls less on the hot path of every cancel.
        market = self.markets[order.symbol]
        book = market.book
        # `BookSide.remove` inline, as above; the key negated rather than multiplied by the
        # side's sign: fewer bytecodes, and none for a sell.
        if order.side is BUY:
            own = book.bids
            key = -order.price
        else:
            own = book.asks
            key = order.price
        level = own.levels[key]
        orders = level.orders
        del orders[order_id]
        canceled = order.leaves_qty
        level.qty -= canceled
        if not orders:
            if level is own.best:
                own.drop_level(level)
            else:  # behind the best: dormant, as `drop_level` leaves it (a call less)
                del own.levels[key]
                own.dormant[key] = level  # no local for it: see `_place_refused`
                orders.clear()  # free the table of the most orders it held
                if len(own.dormant) > DORMANT_LEVELS_MAX:
                    own.forget_dormant()
        # The order leaves every index here and nothing reads it again, so its leaves_qty,
        # status and hold are left as they were: a store on a msgspec struct is never
        # specialised (~280 instructions each; the event says what the order became).
        hold = order.hold
        if hold:  # `Clearing.release` inline: one call less per cancel on the venue path
            asset = market.spec.quote if order.side is BUY else market.spec.base
            position = market.positions.get(account)  # remembered once the account traded here
            if position is None:
                balance = self.clearing.balances[(account, asset)]  # type: ignore[union-attr]
            else:
                balance = position[1] if order.side is BUY else position[0]
            assert hold <= balance.held, f"release {hold} of {balance.held} held"
            balance.held -= hold
            events.append(BalanceChanged(cmd.ts_us, account, asset, balance.total, balance.held))
        del self.orders[order_id]
        if not by_account:  # it held the account's last open order
            del self.account_orders[account]
        if order.cl_ord_id is not None:
            del self.cl_ord_index[(account, order.cl_ord_id)]
        # `ClosedOrders.add` inline (a Python call costs ~450 instructions), its size test
        # left to the clock (`_run_due`): one close at most per command here.
        self.closed_orders.filling[order_id] = account
        events.append(
            OrderCanceled(
                cmd.ts_us, order_id, account, order.symbol, cmd.reason, canceled, order.cum_qty
            )
        )
        return None

    def _cancel_open(self, order: Order, reason: CancelReason, events: list[Event]) -> None:
        """Take an open order out of the book and report it canceled."""
        book = self.markets[order.symbol].book
        (book.bids if order.side is BUY else book.asks).remove(order)
        canceled = order.leaves_qty
        order.leaves_qty = 0
        order.status = OrderStatus.CANCELED
        self._retire(order, events)
        events.append(
            OrderCanceled(
                self.ts_us,
                order.order_id,
                order.account,
                order.symbol,
                reason,
                canceled,
                order.cum_qty,
            )
        )

    def _cancel_all(self, cmd: CancelAll, events: list[Event]) -> None:
        if cmd.account <= 0 or (cmd.side is not None and not isinstance(cmd.side, Side)):
            return self._reject(events, cmd, "cancel_all", E.BAD_PARAM, "bad account or side")
        if cmd.symbol is not None and cmd.symbol not in self.markets:
            detail = unknown_symbol(cmd.symbol, self.markets)
            return self._reject(events, cmd, "cancel_all", E.UNKNOWN_SYMBOL, detail)
        for order in list(self.account_orders.get(cmd.account, {}).values()):
            if (
                (cmd.symbol is None or order.symbol == cmd.symbol)
                and (cmd.side is None or order.side is cmd.side)
                and (cmd.tag is None or order.tag == cmd.tag)
            ):
                self._cancel_open(order, cmd.reason, events)
        return None

    def _cancel_account(self, account: int, reason: CancelReason, events: list[Event]) -> None:
        """Cancel every open order of the account, in the order they were accepted (as a
        `CancelAll` without filters does)."""
        for order in list(self.account_orders.get(account, {}).values()):
            self._cancel_open(order, reason, events)

    # ----------------------------------------------------------------- amend

    def _amend(self, cmd: AmendOrder, events: list[Event]) -> None:
        price = cmd.price
        # The common amend, a requote: a new price, and the same qty or a new one that leaves
        # some to trade (a quote's amend asks for what traded plus the new size), for a
        # resting order by id that stays passive. It passes every check in the two
        # expressions below (the order, then its bounds; if it has traded, the two after
        # them) and moves the order at once (~40% fewer bytecodes than the checks one by one
        # and two calls less); a size cut at its price goes to `_amend_keeping_priority`.
        # False says only "look closer": `_amend_checked` finds the reason, if any. The
        # fallback comes right after each expression: CPython 3.11 specialises a compare
        # (~130 instructions less) only when a short jump follows it.
        if not (
            cmd.cl_ord_id is None
            and cmd.new_cl_ord_id is None
            and (order := self.orders.get(cmd.order_id)) is not None
            and (market := self.markets[order.symbol]).status is OPEN
            and order.account == cmd.account
            and (cmd.symbol is None or cmd.symbol == order.symbol)
        ):
            return self._amend_checked(cmd, events)
        if price == order.price or not price:  # no new price: a size cut, perhaps
            return self._amend_keeping_priority(cmd, order, market, events)
        if not (
            (
                0 < price <= market.buy_price_max
                if (buys := order.side is BUY)  # tested once: a local is read in 2 bytecodes
                else market.band_low <= price <= SMALL_INT_MAX
            )
            and (qty := cmd.qty or order.qty) >= market.min_qty
            and qty <= market.qty_max_plain
            and (
                market.steps_and_notional_free  # as in `_place`: the bounds above suffice
                or (
                    (market.unit_steps or not (price % market.price_tick or qty % market.qty_step))
                    and (
                        market.notional_free
                        or market.min_notional_scaled
                        <= price * qty * market.notional_num
                        <= market.notional_max_plain
                    )
                )
            )
        ):
            return self._amend_checked(cmd, events)
        cum_qty = order.cum_qty
        if cum_qty:  # it must leave some to trade, and what it traded counts to the bound
            if not (
                qty > cum_qty
                and (
                    # What this path has always let through: a traded order that keeps its
                    # qty, bounded by price x qty alone (see `Market.order_value_max`), but
                    # for a buy with a ledger. First: the exact bound's numbers are large.
                    (qty == order.qty and (not buys or self.clearing is None))
                    or order.filled_value + price * (qty - cum_qty) <= market.order_value_max
                )
            ):
                return self._amend_checked(cmd, events)
            leaves_qty = qty - cum_qty
        else:  # price x qty, bounded above, is all it may trade
            leaves_qty = qty
        # It stays passive: its new price does not reach the opposite best (a level's key is
        # its price times its side's sign, so the prices compare without a multiplication).
        book = market.book
        if buys:
            own = book.bids
            best = book.asks.best
            if best is not None and best.price <= price:
                return self._amend_checked(cmd, events)
        else:
            own = book.asks
            best = book.bids.best
            if best is not None and best.price >= price:
                return self._amend_checked(cmd, events)
        clearing = self.clearing
        delta = 0
        if clearing is not None:  # what it must hold at the new price: `rehold` inline
            if buys:
                terms = market.terms
                assert terms is not None, "clearing a market without cash terms"
                if cum_qty:  # the worst case of the rest, on top of what it paid
                    new_hold = terms.buy_hold_after_fills(
                        order.filled_value, order.fee_exact, order.fees_paid, price * leaves_qty
                    )
                else:  # `CashTerms.buy_hold` written out, as in `_place`: one call less
                    cost = price * terms.num * qty
                    new_hold = (cost + terms.den_up) // terms.den + (
                        cost * terms.fee_bps_max + terms.fee_up
                    ) // terms.den // BPS
            else:  # a sell holds what it may still deliver
                new_hold = leaves_qty
            delta = new_hold - order.hold
            # The balance only for a hold that changes (a sell's price move keeps its hold): a
            # hold that does not change always fits.
            if delta:
                # The account's remembered position when it has one (see `_place`), else by key.
                position = market.positions.get(order.account)
                asset = market.spec.quote if buys else market.spec.base
                if position is None:
                    balance = clearing.balances[(order.account, asset)]
                elif buys:
                    balance = position[1]
                else:
                    balance = position[0]
                if delta > balance.total - balance.held:  # the hold does not fit
                    return self._amend_checked(cmd, events)
        if qty != order.qty:  # a store on a msgspec struct is never specialised: skip it
            order.qty = qty
        own.move(order, price, leaves_qty)
        events.append(
            OrderAmended(
                cmd.ts_us,
                order.order_id,
                order.account,
                order.symbol,
                price,
                qty,
                leaves_qty,
                cum_qty,
                order.status,
                False,  # a new price loses priority
                order.cl_ord_id,
            )
        )
        if delta:
            assert balance.held + delta >= 0, f"{order} rehold"
            balance.held += delta
            order.hold = new_hold
            events.append(
                BalanceChanged(cmd.ts_us, order.account, asset, balance.total, balance.held)
            )
        return None

    def _amend_pair(self, cmd: AmendPair, events: list[Event]) -> None:
        """The bid's amend, then the ask's, exactly as `execute` runs two `AmendOrder`s of
        one time: what is due ran before the bid (`execute`) and is asked after again before
        the ask, as the ask's own `execute` would (no amend makes anything due sooner today;
        asked anyway, so that the equivalence does not rest on that). `pair_split`: where the
        ask's events begin."""
        bid, ask = cmd.sides()
        self._amend(bid, events)
        self.pair_split = len(events)
        if cmd.ts_us >= self._due_us:
            self._run_due(cmd.ts_us, events)
        self._amend(ask, events)

    def _amend_keeping_priority(
        self, cmd: AmendOrder, order: Order, market: Market, events: list[Event]
    ) -> None:
        """The other common amend, a quote's size cut: a smaller qty that leaves some to
        trade, at the same price (or none given), of `order`, found by id, of this account,
        in an open `market`. It keeps its place, passing every check in one expression as
        `_amend`'s move does (~570 bytecodes and six calls one by one); False sends it to
        `_amend_checked`, like any other amend. It cannot cross, and what it may still trade
        only shrinks: no value bound to check."""
        qty = cmd.qty
        price = order.price
        if not (
            (
                0 < price <= market.buy_price_max
                if (buys := order.side is BUY)
                else market.band_low <= price <= SMALL_INT_MAX
            )
            and (cum_qty := order.cum_qty) < qty < order.qty  # 0 < qty: a qty is given
            and qty >= market.min_qty
            and qty <= market.qty_max_plain
            and (
                market.steps_and_notional_free
                or (
                    (market.unit_steps or not (price % market.price_tick or qty % market.qty_step))
                    and (
                        market.notional_free
                        or market.min_notional_scaled
                        <= price * qty * market.notional_num
                        <= market.notional_max_plain
                    )
                )
            )
        ):
            return self._amend_checked(cmd, events)
        leaves_qty = qty - cum_qty
        clearing = self.clearing
        if clearing is not None:  # what it must hold for less, by `Clearing`'s own rules
            if not buys:
                new_hold = leaves_qty
            elif cum_qty:
                new_hold = clearing.buy_hold_for(order, market, price, leaves_qty)
            else:
                terms = market.terms
                assert terms is not None, "clearing a market without cash terms"
                new_hold = terms.buy_hold(price, qty)
            grows = new_hold - order.hold  # less to trade holds less, unless the fees changed
            if grows > 0:
                asset = market.spec.quote if buys else market.spec.base
                if grows > clearing.available(order.account, asset):
                    return self._amend_checked(cmd, events)
        own = market.book.bids if buys else market.book.asks
        own.levels[price * own.sign].qty -= order.leaves_qty - leaves_qty
        order.leaves_qty = leaves_qty
        order.qty = qty
        events.append(
            OrderAmended(
                cmd.ts_us,
                order.order_id,
                order.account,
                order.symbol,
                price,
                qty,
                leaves_qty,
                cum_qty,
                order.status,
                True,  # the same price and less qty keep priority
                order.cl_ord_id,
            )
        )
        if clearing is not None:
            clearing.rehold(order, market, new_hold, cmd.ts_us, events)
        return None

    def _amend_checked(self, cmd: AmendOrder, events: list[Event]) -> None:
        """Every amend `_amend` does not move at once: the checks one by one, in precedence
        order, then the amend (a qty change, a new cl_ord_id, a cross, a new hold)."""
        if (cmd.order_id > 0) == (cmd.cl_ord_id is not None) or not (
            cmd.order_id >= 0 and 0 <= cmd.price <= UNITS_MAX and 0 <= cmd.qty <= UNITS_MAX
        ):
            return self._reject(
                events, cmd, "amend_order", E.BAD_PARAM, "one of order_id, cl_ord_id; no negatives"
            )
        if not (cmd.price or cmd.qty or cmd.new_cl_ord_id is not None) or _too_long(
            cmd.new_cl_ord_id, CL_ORD_ID_LENGTH_MAX
        ):
            return self._reject(
                events, cmd, "amend_order", E.BAD_PARAM, "give price, qty or a new cl_ord_id"
            )
        if cmd.cl_ord_id is None:  # `find_order` inline: the hot path of every amend
            order = self.orders.get(cmd.order_id)
            if order is not None and order.account != cmd.account:
                order = None
        else:
            order = self.cl_ord_index.get((cmd.account, cmd.cl_ord_id))
        if order is None:
            return self._reject_missing(events, cmd, "amend_order")
        if cmd.symbol is not None and cmd.symbol != order.symbol:
            detail = (
                f"the order is on {order.symbol}, not {cmd.symbol}, whose decimals the price"
                " and qty were read at (an earlier request moved its cl_ord_id): nothing"
                " changed; send it again"
            )
            return self._reject(events, cmd, "amend_order", E.BAD_PARAM, detail, order.order_id)
        market = self.markets[order.symbol]
        book = market.book
        own, opposite = (book.bids, book.asks) if order.side is BUY else (book.asks, book.bids)
        price = cmd.price or order.price
        qty = cmd.qty or order.qty
        # Only a new price can reach the other side: the order rested uncrossed at its old one.
        best = opposite.best
        crosses = price != order.price and best is not None and best.key <= price * opposite.sign
        # What the amended order must hold, worked out once for the check and the rehold.
        new_hold = 0
        if self.clearing is not None and qty > order.cum_qty:
            if order.side is BUY:
                terms = market.terms
                assert terms is not None, "clearing a market without cash terms"
                if order.cum_qty:
                    new_hold = self.clearing.buy_hold_for(order, market, price, qty - order.cum_qty)
                else:  # nothing traded yet: a fresh buy's hold, with half the arithmetic
                    new_hold = terms.buy_hold(price, qty)
            else:  # a sell holds what it may still deliver
                new_hold = qty - order.cum_qty
        refusal = self._amend_refusal(cmd, order, market, price, qty, crosses, new_hold)
        if refusal is not None:
            code, detail = refusal
            if code is E.INSUFFICIENT_BALANCE:
                assert self.clearing is not None
                more = new_hold - order.hold
                asset = market.spec.quote if order.side is BUY else market.spec.base
                available = self.clearing.available(order.account, asset)
                return self._reject_short(
                    events, cmd, "amend_order", market, order.side, more, available, order.order_id
                )
            if code is E.NOTIONAL_OUT_OF_RANGE:
                worst = _worst_price(market, order.side, price)
                facts = _value_facts(market, worst, qty - order.cum_qty, order.filled_value)
            else:
                facts = _refusal_facts(code, market, order.side, LIMIT, price, qty, 0)
            return self._reject(events, cmd, "amend_order", code, detail, order.order_id, facts)
        self._apply_amend(
            cmd.new_cl_ord_id, order, market, own, price, qty, crosses, new_hold, events
        )
        if crosses and order.leaves_qty:
            limit_key = price * opposite.sign
            if not self._match(market, order, opposite, limit_key, 0, events):
                self._retire(order, events)
                return None
            self._release_improvement(order, market, events)
            own.add(order)
        return None

    def _amend_refusal(
        self,
        cmd: AmendOrder,
        order: Order,
        market: Market,
        price: int,
        qty: int,
        crosses: bool,
        new_hold: int,
    ) -> tuple[ErrorCode, str] | None:
        """The first business reason to refuse this amend, in precedence order.

        `new_hold` is what the amended order must hold (with a ledger, when it stays open).
        """
        if market.status is InstrumentStatus.HALTED or market.status is CANCEL_ONLY:
            return _status_refusal(market)
        new_cl = cmd.new_cl_ord_id
        renames = new_cl is not None and new_cl != order.cl_ord_id
        if price == order.price and qty == order.qty and not renames:
            return E.AMEND_REJECTED, "the amend changes nothing"
        if renames and (order.account, new_cl) in self.cl_ord_index:
            return E.DUPLICATE_CL_ORD_ID, f"cl_ord_id {new_cl!r} is in use"
        if price % market.price_tick:
            return E.INVALID_PRICE_TICK, "price is not on the tick"
        if qty % market.qty_step:
            return E.INVALID_QTY_STEP, "qty is not a multiple of the step"
        if qty <= order.cum_qty:
            return None  # completes the order: nothing left to check
        if qty < market.min_qty:
            return E.BELOW_MIN_QTY, "qty is below the minimum"
        if market.max_qty and qty > market.max_qty:
            return E.ABOVE_MAX_QTY, "qty is above the per-order maximum"
        if price > market.band_high if order.side is BUY else price < market.band_low:
            return E.PRICE_BAND, "price is outside the band"
        if price * qty * market.notional_num < market.min_notional_scaled:
            return E.BELOW_MIN_NOTIONAL, "notional is below the minimum"
        if market.above_max_notional(price, qty):
            return E.ABOVE_MAX_NOTIONAL, "notional is above the per-order maximum"
        # What it traded plus the rest at the worst price it may trade at; not for an amend
        # that takes no more qty and lowers the rest's worth (requotes may have let what it
        # traded pass the bound: see `Market.order_value_max`), as such an amend leaves less
        # to trade, at prices that later requotes (price x qty) bound no higher than before.
        worst = _worst_price(market, order.side, price)
        rest = qty - order.cum_qty
        if (
            qty > order.qty or worst * rest > order.price * order.leaves_qty
        ) and market.above_value_max(worst, rest, order.filled_value):
            return (
                E.NOTIONAL_OUT_OF_RANGE,
                "what it traded and may trade is past what the venue can account",
            )
        clearing = self.clearing
        more = new_hold - order.hold
        if clearing is not None and more > 0:  # a hold that does not grow is always there
            asset = market.spec.quote if order.side is BUY else market.spec.base
            if more > clearing.available(order.account, asset):
                return E.INSUFFICIENT_BALANCE, f"{asset} is short"
        if crosses:
            if market.status is InstrumentStatus.POST_ONLY:
                return E.POST_ONLY_MODE, f"{market.symbol} accepts only post-only orders"
            if order.post_only:
                return E.POST_ONLY_WOULD_TAKE, "the amended order would take"
        return None

    def _apply_amend(
        self,
        new_cl: str | None,
        order: Order,
        market: Market,
        own: BookSide,
        price: int,
        qty: int,
        crosses: bool,
        new_hold: int,
        events: list[Event],
    ) -> None:
        """Amend the order in place or move it; the caller matches it if it now crosses."""
        if new_cl is not None and new_cl != order.cl_ord_id:
            if order.cl_ord_id is not None:
                del self.cl_ord_index[(order.account, order.cl_ord_id)]
            self.cl_ord_index[(order.account, new_cl)] = order
            order.cl_ord_id = new_cl
        keeps_priority = price == order.price and qty <= order.qty
        completed = qty <= order.cum_qty  # amended down to what already traded: done
        if completed:
            own.remove(order)
            order.qty = order.cum_qty  # done at what traded: qty = cum + leaves still holds
            order.leaves_qty = 0
            order.status = FILLED
        elif keeps_priority:
            reduction = order.qty - qty
            own.levels[price * own.sign].qty -= reduction
            order.leaves_qty -= reduction
            order.qty = qty
        elif crosses:  # out of the book: the caller matches it, then rests what is left
            own.remove(order)
            order.price = price
            order.qty = qty
            order.leaves_qty = qty - order.cum_qty
        else:
            order.qty = qty
            own.move(order, price, qty - order.cum_qty)  # at the back of its new level
        events.append(
            OrderAmended(
                self.ts_us,
                order.order_id,
                order.account,
                order.symbol,
                order.price,
                order.qty,
                order.leaves_qty,
                order.cum_qty,
                order.status,
                keeps_priority,
                order.cl_ord_id,
            )
        )
        if completed:
            self._retire(order, events)
            return
        clearing = self.clearing
        if clearing is not None and new_hold != order.hold:  # `Clearing.rehold` inline
            delta = new_hold - order.hold  # one call less per amend on the venue path
            spec = market.spec
            asset = spec.quote if order.side is BUY else spec.base
            balance = clearing.balances[(order.account, asset)]
            # `_amend_refusal` checked that a growing hold is available.
            assert 0 <= balance.held + delta <= balance.total, f"{order} cannot hold {new_hold}"
            balance.held += delta
            order.hold = new_hold
            events.append(
                BalanceChanged(self.ts_us, order.account, asset, balance.total, balance.held)
            )

    def _release_improvement(self, order: Order, market: Market, events: list[Event]) -> None:
        """A buy that traded as taker and now rests holds only the worst case of its rest."""
        clearing = self.clearing
        if clearing is not None and order.side is BUY and order.cum_qty:
            rest = clearing.buy_hold_for(order, market, order.price, order.leaves_qty)
            clearing.rehold(order, market, rest, self.ts_us, events)

    # ----------------------------------------------------------------- time

    def _advance_clock(self, cmd: AdvanceClock, events: list[Event]) -> None:
        """Fire the dead-man's switches whose deadline passed, earliest first (`execute` has
        already expired and matured what was due). Here and in `_arm_dead_man`, not in
        `execute`: a switch is looked at only when the clock ticks or a switch is armed, never
        per order command."""
        self._fire_due_switches(cmd.ts_us, events)

    def _refuse_unread(self, cmd: RefuseUnreadCommand, events: list[Event]) -> None:
        """A command the cluster's core could not read, refused in its place: nothing done."""
        named = f"({cmd.kind!r})" if cmd.kind else "(of no type it could read)"
        detail = (
            f"the active core cannot read this command {named}: the gateway runs a later build"
            " than the core; nothing done, send it again once every core runs the gateway's build"
        )
        self._reject(events, cmd, REFUSED_UNREAD, E.UNSUPPORTED_COMMAND, detail)

    def _fire_due_switches(self, ts: int, events: list[Event]) -> None:
        """Fire every armed switch whose deadline is at or before `ts`, earliest first."""
        queue, armed = self.dead_man_queue, self.dead_man_deadlines
        while queue and queue[0][0] <= ts:
            deadline_us, account = heappop(queue)
            if armed.get(account) != deadline_us:
                continue  # re-armed or disarmed since: its entry outlived it
            del armed[account]
            events.append(DeadManTriggered(ts, account))
            self._cancel_account(account, CancelReason.DMS, events)
        self._drop_disarmed_heads()

    def _arm_dead_man(self, cmd: ArmDeadMan, events: list[Event]) -> None:
        """Arm (or with a timeout of 0, disarm) the account's one dead-man's switch. The
        switches already due fire first: a re-arm that comes after a deadline but before
        the clock's tick (a restart, a core taking over, the tick's interval) is too late."""
        account, timeout_ms = cmd.account, cmd.timeout_ms
        if account <= 0 or not 0 <= timeout_ms <= DEAD_MAN_TIMEOUT_MS_MAX:
            detail = f"bad account or timeout_ms (0 to {DEAD_MAN_TIMEOUT_MS_MAX})"
            return self._reject(events, cmd, "arm_dead_man", E.BAD_PARAM, detail)
        self._fire_due_switches(cmd.ts_us, events)
        armed = self.dead_man_deadlines
        deadline_us = cmd.ts_us + timeout_ms * 1_000 if timeout_ms else 0
        if deadline_us:
            armed[account] = deadline_us
            queue = self.dead_man_queue
            heappush(queue, (deadline_us, account))
            if len(queue) > 2 * len(armed) + 1024:  # mostly entries of re-armed ones: rebuild
                self.dead_man_queue = queue = [(d, a) for a, d in armed.items()]
                heapify(queue)
        else:
            armed.pop(account, None)
        self._drop_disarmed_heads()
        events.append(DeadManArmed(cmd.ts_us, account, deadline_us))
        return None

    def _shift_dead_man_deadlines(self, cmd: ShiftDeadManDeadlines, events: list[Event]) -> None:
        """Push every switch due after `since_us` back by the time from then to the command's,
        in which no core was active; `DeadManArmed` with its new deadline for each, by
        account (not in arming order: a replica restored from a snapshot armed them sorted).
        The switches due at or before `since_us` stay due: the next tick fires them."""
        since_us, ts = cmd.since_us, cmd.ts_us
        if not 0 <= since_us <= ts:
            detail = f"since_us {since_us} is not at or before the command's time {ts}"
            return self._reject(events, cmd, "shift_dead_man_deadlines", E.BAD_PARAM, detail)
        gap_us = ts - since_us
        armed = self.dead_man_deadlines
        for account, deadline_us in sorted(armed.items()):
            if deadline_us > since_us:
                armed[account] = deadline_us + gap_us
                events.append(DeadManArmed(ts, account, deadline_us + gap_us))
        # Shifted or not, each keeps its place among the others: rebuilt anyway, which also
        # drops the entries of re-armed switches.
        self.dead_man_queue = queue = [(d, a) for a, d in armed.items()]
        heapify(queue)
        return None

    def _drop_disarmed_heads(self) -> None:
        """Pop the queue's head while it is no armed switch: so a tick finds a switch due
        only when one is (an `AdvanceClock` journaled for nothing, otherwise)."""
        queue, armed = self.dead_man_queue, self.dead_man_deadlines
        while queue and armed.get(queue[0][1]) != queue[0][0]:
            heappop(queue)

    def adopt_dead_man_deadlines(self, deadlines: list[tuple[int, int]]) -> None:
        """Put armed switches back, (account, deadline_us), as restored from a snapshot."""
        self.dead_man_deadlines = dict(deadlines)
        self.dead_man_queue = [(deadline_us, account) for account, deadline_us in deadlines]
        heapify(self.dead_man_queue)

    # ----------------------------------------------------------------- cancel-on-disconnect

    def _set_cancel_on_disconnect(self, cmd: SetCancelOnDisconnect, events: list[Event]) -> None:
        """Mark or unmark the account's listed open orders (`Order.cod`): matching never
        reads the mark; a start after a crash cancels the marked ones (`cod_order_ids`)."""
        account, order_ids = cmd.account, cmd.order_ids
        if account <= 0 or len(order_ids) > self._open_orders_max:
            detail = f"bad account or more than {self._open_orders_max} order ids"
            return self._reject(events, cmd, "set_cancel_on_disconnect", E.BAD_PARAM, detail)
        if any(later <= earlier for earlier, later in pairwise(order_ids)):
            detail = "order ids must be ascending, each once"
            return self._reject(events, cmd, "set_cancel_on_disconnect", E.BAD_PARAM, detail)
        own = self.account_orders.get(account, {})
        marked = []
        for order_id in order_ids:
            order = own.get(order_id)
            if order is not None:  # else closed since it was listed: nothing to mark
                order.cod = cmd.cod
                marked.append(order_id)
        events.append(CancelOnDisconnectSet(cmd.ts_us, account, cmd.cod, tuple(marked)))
        return None

    def _refuse_cancel_on_disconnect(
        self, cmd: RefuseCancelOnDisconnect, events: list[Event]
    ) -> None:
        """A cluster gateway's cod cancel of an order whose cod another gateway had taken,
        refused by the core in its place: the order stays as it is, and no report is owed
        (nobody asked: the closed connection's gateway sent it, and the order did not change)."""

    def _expire_due(self, ts: int, events: list[Event]) -> None:
        queue = self.gtd_queue
        while queue and queue[0][0] <= ts:
            _, order_id = heappop(queue)
            order = self.orders.get(order_id)
            if order is None:
                continue  # closed before it expired: its queue entry outlived it
            self.markets[order.symbol].book.side(order.side).remove(order)
            expired = order.leaves_qty
            order.leaves_qty = 0
            order.status = OrderStatus.EXPIRED
            self._retire(order, events)
            events.append(
                OrderExpired(
                    ts,
                    order_id,
                    order.account,
                    order.symbol,
                    CancelReason.GTD,
                    expired,
                    order.cum_qty,
                )
            )

    def _mature_due(self, ts: int, events: list[Event]) -> None:
        """T-bills whose maturity has come: stop trading, cancel orders, redeem at par."""
        while self.maturities and self.maturities[0][0] <= ts:
            _, symbol = heappop(self.maturities)
            market = self.markets[symbol]
            if not market.matured:  # an operator may have matured it early
                self._mature(market, ts, events)

    def _mature_instrument(self, cmd: MatureInstrument, events: list[Event]) -> None:
        """An operator matures a T-bill now: exactly what its maturity date would do."""
        market = self.markets.get(cmd.symbol)
        if market is None:
            detail = unknown_symbol(cmd.symbol, self.markets)
            return self._reject(events, cmd, "mature_instrument", E.UNKNOWN_SYMBOL, detail)
        if market.spec.kind is not InstrumentKind.TBILL:
            detail = f"{cmd.symbol} is not a T-bill"
            return self._reject(events, cmd, "mature_instrument", E.BAD_PARAM, detail)
        if market.matured:
            detail = f"{cmd.symbol} has matured"
            return self._reject(events, cmd, "mature_instrument", E.INSTRUMENT_MATURED, detail)
        self._mature(market, cmd.ts_us, events)
        return None

    def _mature(self, market: Market, ts: int, events: list[Event]) -> None:
        """Stop the bill trading for good, cancel its orders, pay every holder par."""
        symbol = market.symbol
        market.matured = True
        self.matured_assets.add(market.spec.base)
        if market.status is not InstrumentStatus.DELISTED:  # delisted: nothing trades
            market.status = InstrumentStatus.CANCEL_ONLY
            events.append(InstrumentStatusChanged(ts, symbol, market.status))
            for order in list(market.book.iter_orders()):
                self._cancel_open(order, CancelReason.MATURITY, events)
        events.append(self._redeem(market, ts, events))  # holders are paid regardless

    def _redeem(self, market: Market, ts: int, events: list[Event]) -> InstrumentMatured:
        """Pay every holder of a matured bill par, in one chain; balances reported after."""
        ledger = self.ledger
        if ledger is None:
            return InstrumentMatured(ts, market.symbol, 0, 0, 0, 0)
        spec = market.spec
        for withdrawal in list(ledger.withdrawals.values()):
            # One held through actions stays pending, its tokens unpaid: the custodian may
            # have paid it out; its void pays them par (`Custody.void`).
            if withdrawal.asset == spec.base and not withdrawal.held_through_actions:
                self.custody.void(withdrawal.withdrawal_id, ts, events)
        cash_per_unit = 10 ** (spec.quote_decimals - spec.qty_decimals)
        booked = ledger.redeem_at_par(spec.base, spec.quote, cash_per_unit, ts)
        paid = [t for t in booked if t.kind is TransferKind.REDEMPTION]
        for transfer in paid:
            events.append(balance_changed(ledger, transfer.credit_account, spec.base, ts))
            events.append(balance_changed(ledger, transfer.credit_account, spec.quote, ts))
        return InstrumentMatured(
            ts,
            market.symbol,
            len(paid),
            sum(t.amount for t in paid) // cash_per_unit,
            sum(t.amount for t in paid),
            booked[0].chain_id if booked else 0,
        )

    # ----------------------------------------------------------------- operators

    def _list_instrument(self, cmd: ListInstrument, events: list[Event]) -> None:
        spec = cmd.spec
        problem = spec.problem() if isinstance(spec, InstrumentSpec) else "spec is missing"
        if problem is not None:
            return self._reject(events, cmd, "list_instrument", E.BAD_PARAM, problem)
        if spec.symbol in self.markets:
            return self._reject(events, cmd, "list_instrument", E.INSTRUMENT_EXISTS, spec.symbol)
        if cmd.unique_by_case and (
            twin := case_twin_refusal(spec.symbol, self.markets, "instrument {} is listed")
        ):
            return self._reject(events, cmd, "list_instrument", E.INSTRUMENT_EXISTS, twin)
        if self.clearing is not None:
            listed = (market.spec for market in self.markets.values())
            problem = (
                self.clearing.listing_problem(spec)
                or self.clearing.shares_a_bill(spec, listed)
                or self.custody.listing_problem(spec)  # the par its tokens out would pay
            )
            if problem is not None:
                return self._reject(events, cmd, "list_instrument", E.BAD_PARAM, problem)
        if spec.maturity_us and spec.maturity_us <= cmd.ts_us:
            detail = (
                f"{spec.symbol} matures at {spec.maturity_us} µs, not after now ({cmd.ts_us} µs):"
                " it would never trade"
            )
            return self._reject(events, cmd, "list_instrument", E.MATURITY_PASSED, detail)
        market = self.markets[spec.symbol] = Market(spec)
        if self.clearing is not None:
            market.terms = self.clearing.terms(spec)
        if spec.maturity_us:
            heappush(self.maturities, (spec.maturity_us, spec.symbol))
            self.note_due(spec.maturity_us)
        events.append(InstrumentListed(cmd.ts_us, spec))
        return None

    def _set_status(self, cmd: SetInstrumentStatus, events: list[Event]) -> None:
        if not isinstance(cmd.status, InstrumentStatus):
            detail = f"status {cmd.status!r} is not one of {', '.join(InstrumentStatus)}"
            return self._reject(events, cmd, "set_instrument_status", E.BAD_PARAM, detail)
        market = self._operable_market(cmd, "set_instrument_status", events)
        if market is None:
            return None
        if market.matured and cmd.status in TRADING_STATUSES:
            detail = (
                f"{market.symbol} has matured (its holders were paid par) and never trades"
                f" again: its status may be halted, cancel_only or delisted, not {cmd.status}"
            )
            return self._reject(events, cmd, "set_instrument_status", E.INSTRUMENT_MATURED, detail)
        market.status = cmd.status
        events.append(InstrumentStatusChanged(cmd.ts_us, market.symbol, cmd.status))
        if cmd.status is InstrumentStatus.DELISTED:
            for order in list(market.book.iter_orders()):
                self._cancel_open(order, CancelReason.ADMIN, events)
        return None

    def _set_reference_price(self, cmd: SetReferencePrice, events: list[Event]) -> None:
        if not 0 < cmd.price <= UNITS_MAX:
            return self._reject(
                events, cmd, "set_reference_price", E.BAD_PARAM, "price must be positive"
            )
        market = self._operable_market(cmd, "set_reference_price", events)
        if market is None:
            return None
        if cmd.price % market.price_tick:
            return self._reject(
                events, cmd, "set_reference_price", E.INVALID_PRICE_TICK, "price is not on the tick"
            )
        if cmd.lot_checked:  # no order could pass the cap at the new band's low
            band_low = band_limits(cmd.price, market.spec.price_band_bps, market.price_tick)[0]
            problem = notional_cap_problem(market.spec, band_low)
            if problem is not None:
                price = format_units(cmd.price, market.spec.price_decimals)
                detail = (
                    f"reference price {price} would refuse every order on {cmd.symbol}:"
                    f" {problem}; raise max_notional first (admin.set_order_caps)"
                )
                return self._reject(events, cmd, "set_reference_price", E.BAD_PARAM, detail)
        market.set_reference_price(cmd.price)
        events.append(ReferencePriceSet(cmd.ts_us, market.symbol, cmd.price))
        return None

    def _set_order_caps(self, cmd: SetOrderCaps, events: list[Event]) -> None:
        if not (0 <= cmd.max_qty <= UNITS_MAX and 0 <= cmd.max_notional <= UNITS_MAX):
            detail = "max_qty and max_notional must be within range (0: no cap)"
            return self._reject(events, cmd, "set_order_caps", E.BAD_PARAM, detail)
        market = self._operable_market(cmd, "set_order_caps", events)
        if market is None:
            return None
        changed = msgspec.structs.replace(
            market.spec, max_qty=cmd.max_qty, max_notional=cmd.max_notional
        )
        problem = changed.caps_problem()
        if problem is None and cmd.lot_checked:
            problem = notional_cap_problem(changed, market.band_low)
        if problem is not None:
            return self._reject(events, cmd, "set_order_caps", E.BAD_PARAM, problem)
        market.set_caps(cmd.max_qty, cmd.max_notional)
        events.append(OrderCapsSet(cmd.ts_us, market.symbol, cmd.max_qty, cmd.max_notional))
        return None

    def _set_reserve_staleness(self, cmd: SetReserveStaleness, events: list[Event]) -> None:
        staleness_us = cmd.staleness_max_us
        if not 0 < staleness_us <= RESERVE_STALENESS_MAX_US:
            detail = f"the reserve staleness bound is 1 to {RESERVE_STALENESS_MAX_US} µs"
            return self._reject(events, cmd, "set_reserve_staleness", E.BAD_PARAM, detail)
        # Also the journal's mark that the venue runs under today's rules from here on: every
        # `cl_op_id` remembered (a journal begun before it forgot the oldest until then).
        self.config = msgspec.structs.replace(
            self.config, reserve_staleness_max_us=staleness_us, operations_retained_max=0
        )
        self.operations.remember_every_one()
        if self.ledger is not None:  # custody decides deposits under its own copy
            self.custody.reserve_staleness_max_us = staleness_us
            if cmd.withdrawals_held:  # none voided by a maturity from here on
                self.ledger.hold_through_actions()
        events.append(ReserveStalenessSet(cmd.ts_us, staleness_us))
        return None

    def _operable_market(
        self,
        cmd: SetInstrumentStatus | SetReferencePrice | SetOrderCaps,
        name: str,
        events: list[Event],
    ) -> Market | None:
        """The listed, not delisted market the operator command names, or a rejection."""
        market = self.markets.get(cmd.symbol)
        if market is None:
            detail = unknown_symbol(cmd.symbol, self.markets)
            self._reject(events, cmd, name, E.UNKNOWN_SYMBOL, detail)
        elif market.status is InstrumentStatus.DELISTED:
            detail = f"{cmd.symbol} is delisted, which is final: nothing about it changes any more"
            self._reject(events, cmd, name, E.INSTRUMENT_DELISTED, detail)
            market = None
        return market

    # ----------------------------------------------------------------- bookkeeping

    def _rest(self, book: OrderBook, order: Order) -> None:
        """Put an open order in the book and in every index."""
        (book.bids if order.side is BUY else book.asks).add(order)
        self._index(order)

    def _index(self, order: Order) -> None:
        order_id = order.order_id
        self.orders[order_id] = order
        by_account = self.account_orders.get(order.account)
        if by_account is None:
            by_account = self.account_orders[order.account] = {}
        by_account[order_id] = order
        if order.cl_ord_id is not None:
            self.cl_ord_index[(order.account, order.cl_ord_id)] = order
        if order.tif is GTD:
            self._queue_expiry(order)

    def _retire(self, order: Order, events: list[Event]) -> None:
        """Forget a closed order (already out of the book), remembering only its owner.

        Whatever it still holds is released.
        """
        if order.hold:
            clearing = self.clearing
            assert clearing is not None, f"{order} holds funds without a ledger"
            clearing.release(order, self.markets[order.symbol], self.ts_us, events)
        order_id = order.order_id
        if self.orders.pop(order_id, None) is not None:
            by_account = self.account_orders[order.account]
            del by_account[order_id]
            if not by_account:
                del self.account_orders[order.account]
            if order.cl_ord_id is not None:
                del self.cl_ord_index[(order.account, order.cl_ord_id)]
        self.closed_orders.add(order_id, order.account)

    def _queue_expiry(self, order: Order) -> None:
        queue = self.gtd_queue
        heappush(queue, (order.expire_at_us, order.order_id))
        self.note_due(order.expire_at_us)
        if len(queue) > 2 * len(self.orders) + 1024:  # mostly stale entries: rebuild
            live = [(o.expire_at_us, o.order_id) for o in self.orders.values() if o.tif is GTD]
            heapify(live)
            self.gtd_queue = live

    def missing_order_reason(
        self, account: int, order_id: int, cl_ord_id: str | None
    ) -> tuple[ErrorCode, str]:
        """Why the account has no open order by this name: `ORDER_NOT_OPEN` for its own
        recently closed order named by id; else `UNKNOWN_ORDER` (a cl_ord_id names open
        orders only, as it may be reused once its order closed)."""
        if cl_ord_id is None and self.closed_orders.owner(order_id) == account:
            return E.ORDER_NOT_OPEN, "the order is closed"
        return E.UNKNOWN_ORDER, "no such order"

    def _reject_missing(
        self, events: list[Event], cmd: CancelOrder | AmendOrder, name: str
    ) -> None:
        """Refuse a command on an order the account has no open order for."""
        reason, detail = self.missing_order_reason(cmd.account, cmd.order_id, cmd.cl_ord_id)
        self._reject(events, cmd, name, reason, detail, cmd.order_id)

    def _reject(
        self,
        events: list[Event],
        cmd: Any,
        name: str,
        reason: ErrorCode,
        detail: str,
        order_id: int = 0,
        facts: tuple[Fact, ...] = (),
        asset: str | None = None,
    ) -> None:
        events.append(
            CommandRejected(
                cmd.ts_us,
                name,
                reason,
                detail,
                getattr(cmd, "account", 0),
                getattr(cmd, "symbol", None),
                order_id,
                getattr(cmd, "cl_ord_id", None),
                facts,
                asset,
            )
        )

    def _reject_short(
        self,
        events: list[Event],
        cmd: PlaceOrder | AmendOrder,
        name: str,
        market: Market,
        side: Side,
        needed: int,
        available: int,
        order_id: int = 0,
    ) -> None:
        """Refuse an order that cannot hold what it needs, saying how much is short."""
        spec = market.spec
        asset, decimals = (
            (spec.quote, spec.quote_decimals) if side is BUY else (spec.base, spec.qty_decimals)
        )
        facts = (("needed", needed, decimals), ("available", available, decimals))
        detail = f"{asset} is short"
        self._reject(events, cmd, name, E.INSUFFICIENT_BALANCE, detail, order_id, facts, asset)


def _place_shape_problem(cmd: PlaceOrder) -> str | None:
    """What makes this order malformed regardless of any state, or None."""
    if cmd.account <= 0 or (cmd.side is not BUY and cmd.side is not SELL):
        return "account must be positive and side buy or sell"
    if cmd.stp not in STP_MODES:
        return "unknown stp mode"
    if not (0 <= cmd.qty <= UNITS_MAX and 0 <= cmd.price <= UNITS_MAX):
        return "price and qty must be within range"
    if (cmd.cl_ord_id is not None or cmd.tag is not None) and (
        _too_long(cmd.cl_ord_id, CL_ORD_ID_LENGTH_MAX) or _too_long(cmd.tag, TAG_LENGTH_MAX)
    ):
        return "cl_ord_id and tag may have 1..36 characters"
    if _too_long(cmd.quote_set, QUOTE_SET_LENGTH_MAX):
        return "quote_set may have 1..64 characters"
    if cmd.once and cmd.cl_ord_id is None:
        return "once needs a cl_ord_id: it is what a retry is known by"
    tif = cmd.tif
    if cmd.expire_at_us <= 0 if tif is GTD else cmd.expire_at_us != 0:
        return "expire_at is required for gtd and only for gtd"
    if cmd.order_type is LIMIT:
        if not cmd.price or not cmd.qty or cmd.quote_qty:
            return "a limit order needs a positive price and qty and no quote_qty"
        if tif is not GTC and tif is not IOC and tif is not FOK and tif is not GTD:
            return "unknown tif"
        if cmd.post_only and tif is not GTC and tif is not GTD:
            return "post_only needs tif gtc or gtd"
        return None
    if cmd.order_type is not MARKET:
        return "order type must be limit or market"
    if cmd.price or cmd.post_only or (tif is not IOC and tif is not FOK):
        return _market_shape_problem(cmd)
    if (cmd.qty > 0) == (cmd.quote_qty > 0) or not 0 <= cmd.quote_qty <= UNITS_MAX:
        return "a market order needs exactly one of qty and quote_qty"
    if cmd.quote_qty and (cmd.side is not BUY or tif is not IOC):
        return "quote_qty is for ioc market buys only"
    return None


def _market_shape_problem(cmd: PlaceOrder) -> str:
    """The one rule a market order breaks, of the three it has (before session 35 all three
    were named at once, `a market order has no price, is not post_only and is ioc or fok`,
    to an order that broke only one)."""
    if cmd.price:
        return "a market order has no price"
    if cmd.tif is not IOC and cmd.tif is not FOK:
        return f"a market order is ioc or fok, not {cmd.tif}: it never rests"
    return "a market order is never post_only: it takes"


def _expire_at_problem(expire_at_us: int, ts_us: int) -> str:
    """Why an expire_at at or before now is refused; names a slip of milliseconds or seconds
    as such, with the µs of that time: said, not left to work out (since session 36)."""
    return unit_slip("expire_at", expire_at_us, ts_us) or "expire_at is not in the future"


def _refusal_facts(
    code: ErrorCode,
    market: Market,
    side: Side,
    order_type: OrderType,
    price: int,
    qty: int,
    quote_qty: int,
) -> tuple[Fact, ...]:
    """The numbers behind a size or price refusal, as the check that refused saw them."""
    spec = market.spec
    pd, qd, cd = spec.price_decimals, spec.qty_decimals, spec.quote_decimals
    if code is E.PRICE_BAND:
        return (
            ("band_low", market.band_low, pd),
            ("band_high", market.band_high, pd),
            ("reference_price", market.reference_price, pd),
        )
    if code is E.INVALID_PRICE_TICK:  # named as the instruments channel names them
        return (("tick", spec.price_tick, pd), ("price", price, pd))
    if code is E.INVALID_QTY_STEP:  # a bill's step is 100 units of face: worth saying
        return (("step", spec.qty_step, qd), ("qty", qty, qd))
    if code is E.BELOW_MIN_QTY:
        return (("min_qty", spec.min_qty, qd), ("qty", qty, qd))
    if code is E.ABOVE_MAX_QTY:
        return (("max_qty", spec.max_qty, qd), ("qty", qty, qd))
    if code is E.NOTIONAL_OUT_OF_RANGE:
        if quote_qty:
            return (_value_facts(market, 0, 0, 0)[0], ("notional", quote_qty, cd))
        valued_at = price if order_type is LIMIT else market.band_high
        return _value_facts(market, valued_at, qty, 0)
    if code is not E.BELOW_MIN_NOTIONAL and code is not E.ABOVE_MAX_NOTIONAL:
        return ()
    below = code is E.BELOW_MIN_NOTIONAL
    bound = (
        ("min_notional", spec.min_notional, cd)
        if below
        else ("max_notional", spec.max_notional, cd)
    )
    if quote_qty:
        lot_notional = _step_cost_above(market, quote_qty) if below else 0
        if lot_notional and quote_qty >= spec.min_notional:  # short of one step, not the minimum
            best_ask = market.book.asks.best
            assert best_ask is not None, "a step's cost with no ask"
            lot = ("lot_notional", lot_notional, cd)
            return (lot, ("notional", quote_qty, cd), ("valued_at", best_ask.price, pd))
        return (bound, ("notional", quote_qty, cd))
    if order_type is not LIMIT:  # valued as the check valued it
        price = market.reference_price if below else market.band_high
    units, decimals = market.notional_units(price, qty)
    return (bound, ("notional", units, decimals), ("valued_at", price, pd))


def _worst_price(market: Market, side: Side, price: int) -> int:
    """The highest price an order at `price` may trade at: its own, or a sell's best bid."""
    best = market.book.bids.best if side is not BUY else None
    return best.price if best is not None and best.price > price else price


def _step_cost_above(market: Market, quote_qty: int) -> int:
    """What one step costs at the best ask within the band (quote units, rounded up) when a
    market buy's `quote_qty` cannot pay it, else 0 (it can, or no ask there: that is
    MARKET_NO_LIQUIDITY). `_match` buys whole steps within the budget, so such a buy would
    be accepted only to be canceled with nothing filled."""
    best = market.book.asks.best
    if best is None or best.price > market.band_high:
        return 0
    cost = best.price * market.qty_step * market.notional_num  # in 1/den quote units
    if cost <= quote_qty * market.notional_den:
        return 0
    return -(-cost // market.notional_den)


def _quote_value(market: Market, quote_qty: int) -> int:
    """The most price x qty a market buy with budget `quote_qty` can trade (in all)."""
    return quote_qty * market.notional_den // market.notional_num


def _value_facts(market: Market, valued_at: int, qty: int, filled_value: int) -> tuple[Fact, ...]:
    """The numbers behind NOTIONAL_OUT_OF_RANGE: the venue's bound, what the order traded
    plus `qty` more at `valued_at` (both exact notionals), and that price."""
    bound = ("max_notional", *market.notional_units(market.order_value_max, 1))
    notional = ("notional", *market.notional_units(filled_value + valued_at * qty, 1))
    return (bound, notional, ("valued_at", valued_at, market.spec.price_decimals))


def _status_refusal(market: Market) -> tuple[ErrorCode, str]:
    """Why a market in this status takes no new orders (or amends)."""
    status = market.status
    if status is InstrumentStatus.DELISTED:
        return E.INSTRUMENT_DELISTED, f"{market.symbol} is delisted"
    if status is InstrumentStatus.HALTED:
        return E.INSTRUMENT_HALTED, f"{market.symbol} is halted"
    if status is CANCEL_ONLY:
        return E.CANCEL_ONLY, f"{market.symbol} accepts only cancels"
    return E.POST_ONLY_MODE, f"{market.symbol} accepts only post-only orders"


def _too_long(text: str | None, length_max: int) -> bool:
    return text is not None and not 0 < len(text) <= length_max


def _fillable(
    opposite: BookSide, limit_key: int, qty: int, account: int, stp: SelfTradePrevention
) -> bool:
    """Whether a taker could fill `qty` in full, walking the book without changing it."""
    available = 0
    for level in _levels_within(opposite, limit_key):
        for maker in level.orders.values():
            if maker.account == account and stp is not STP_NONE:
                if stp is EXPIRE_MAKER:
                    continue
                return False  # the taker would be expired here
            available += maker.leaves_qty
            if available >= qty:
                return True
    return False


def _levels_within(side: BookSide, limit_key: int) -> Iterator[Level]:
    return side.levels_within(limit_key)


def _order_state(order: Order) -> tuple[object, ...]:
    state = msgspec.structs.astuple(order)
    # The quote set and the cod mark are state (a replay must restore them), but an order
    # with neither hashes as it did before they existed: such venues' hashes stay comparable.
    if order.cod:
        return state
    return state[:-1] if order.quote_set is not None else state[:-2]
