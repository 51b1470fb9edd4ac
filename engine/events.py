"""Events: the only outputs of `engine.venue.Venue`, named in the past tense.

Immutable, tagged msgspec structs holding no cycles (`gc=False`), built positionally on the
hot path. Every order event says what a FIX execution report needs: the order's status
after the event, its remaining (`leaves_qty`) and filled (`cum_qty`) quantity. Quantities
and prices are integer units of the instrument; see `engine.instrument`.
"""

import msgspec

from engine.enums import (
    CancelReason,
    InstrumentStatus,
    Liquidity,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from engine.instrument import InstrumentSpec
from engine.reasons import ErrorCode
from settlement.ledger import AssetSpec, Attestation, Participant, Withdrawal
from settlement.transfers import Transfer


class Event(msgspec.Struct, frozen=True, gc=False, tag=True):
    ts_us: int


class OrderAccepted(Event, frozen=True, gc=False):
    """An order passed every check; status new, nothing filled yet."""

    order_id: int
    account: int
    symbol: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int
    qty: int
    quote_qty: int
    post_only: bool
    stp: SelfTradePrevention
    cl_ord_id: str | None
    tag: str | None
    expire_at_us: int

    @property
    def status(self) -> OrderStatus:
        return OrderStatus.NEW

    @property
    def leaves_qty(self) -> int:
        return self.qty

    @property
    def cum_qty(self) -> int:
        return 0


Fact = tuple[str, int, int]  # (name, units, decimals): the number units x 10**-decimals


class CommandRejected(Event, frozen=True, gc=False):
    """A command was refused for a business reason; nothing changed.

    `facts` are the numbers that explain the refusal (the band of `PRICE_BAND`, the needed
    and available amounts of `INSUFFICIENT_BALANCE` in `asset`, ...), exact integers that
    the gateway formats as decimal strings.
    """

    command: str
    reason: ErrorCode
    detail: str
    account: int = 0
    symbol: str | None = None
    order_id: int = 0  # the target order, or the live order of a duplicate cl_ord_id
    cl_ord_id: str | None = None
    facts: tuple[Fact, ...] = ()
    asset: str | None = None  # the asset the facts' amounts are in, where one is meant


class TradeExecuted(Event, frozen=True, gc=False):
    """A taker matched a resting maker at the maker's price."""

    symbol: str
    trade_id: int  # +1 per trade of this symbol
    price: int
    qty: int
    taker_side: Side
    maker_order_id: int
    maker_account: int
    maker_leaves_qty: int
    maker_cum_qty: int
    maker_status: OrderStatus
    taker_order_id: int
    taker_account: int
    taker_leaves_qty: int
    taker_cum_qty: int
    taker_status: OrderStatus


class OrderCanceled(Event, frozen=True, gc=False):
    order_id: int
    account: int
    symbol: str
    reason: CancelReason
    canceled_qty: int
    cum_qty: int

    @property
    def status(self) -> OrderStatus:
        return OrderStatus.CANCELED

    @property
    def leaves_qty(self) -> int:
        return 0


class DeadManArmed(Event, frozen=True, gc=False):
    """The account's dead-man's switch now fires at `deadline_us` (0: it is disarmed)."""

    account: int
    deadline_us: int


class DeadManTriggered(Event, frozen=True, gc=False):
    """The account's dead-man's switch fired: its open orders' cancels (reason dms) follow."""

    account: int


class CancelOnDisconnectSet(Event, frozen=True, gc=False):
    """These open orders of the account are now marked `cod` (or no longer are): a start
    after a crash cancels the marked ones. The ids the command named that were open, in its
    order; the others had closed."""

    account: int
    cod: bool
    order_ids: tuple[int, ...]


class OrderExpired(Event, frozen=True, gc=False):
    """A gtd order reached its expire_at time."""

    order_id: int
    account: int
    symbol: str
    reason: CancelReason
    expired_qty: int
    cum_qty: int

    @property
    def status(self) -> OrderStatus:
        return OrderStatus.EXPIRED

    @property
    def leaves_qty(self) -> int:
        return 0


class SelfTradePrevented(Event, frozen=True, gc=False):
    """An order was expired instead of trading with its own account's order."""

    order_id: int
    account: int
    symbol: str
    prevented_qty: int  # what was still open on this order
    cum_qty: int
    liquidity: Liquidity  # whether this order was the resting maker or the taker
    counter_order_id: int

    @property
    def status(self) -> OrderStatus:
        return OrderStatus.EXPIRED

    @property
    def leaves_qty(self) -> int:
        return 0


class OrderAmended(Event, frozen=True, gc=False):
    order_id: int
    account: int
    symbol: str
    price: int
    qty: int
    leaves_qty: int
    cum_qty: int
    status: OrderStatus
    priority_kept: bool
    cl_ord_id: str | None


class InstrumentListed(Event, frozen=True, gc=False):
    spec: InstrumentSpec


class InstrumentStatusChanged(Event, frozen=True, gc=False):
    symbol: str
    status: InstrumentStatus


class ReferencePriceSet(Event, frozen=True, gc=False):
    symbol: str
    price: int


class ReserveStalenessSet(Event, frozen=True, gc=False):
    """Deposits are decided under a new reserve staleness bound from now on."""

    staleness_max_us: int


class OrderCapsSet(Event, frozen=True, gc=False):
    """An instrument's per-order caps changed (0: no cap)."""

    symbol: str
    max_qty: int
    max_notional: int


class TradeSettled(Event, frozen=True, gc=False):
    """The delivery-versus-payment of one trade: all its legs, booked as one chain, and the
    buyer's and the seller's base and quote balances as the chain left them (what a
    `BalanceChanged` of each would say: one event where there were five, on every trade)."""

    symbol: str
    trade_id: int
    settlement_id: int  # the chain id shared by every leg
    transfers: tuple[Transfer, ...]
    buyer: int  # the buyer's account
    seller: int  # the seller's account (the buyer's, in a self-trade)
    base: str
    quote: str
    buyer_base_total: int
    buyer_base_held: int
    buyer_quote_total: int
    buyer_quote_held: int
    seller_base_total: int
    seller_base_held: int
    seller_quote_total: int
    seller_quote_held: int

    def balances(self) -> list[tuple[int, str, int, int]]:
        """(account, asset, total, held) of each balance the trade changed, in the order the
        parties' base and quote come (buyer first), each once: a self-trade's two."""
        changed = [
            (self.buyer, self.base, self.buyer_base_total, self.buyer_base_held),
            (self.buyer, self.quote, self.buyer_quote_total, self.buyer_quote_held),
        ]
        if self.seller != self.buyer:
            changed.append((self.seller, self.base, self.seller_base_total, self.seller_base_held))
            changed.append(
                (self.seller, self.quote, self.seller_quote_total, self.seller_quote_held)
            )
        return changed

    def balance(self, account: int, asset: str) -> tuple[int, int]:
        """(total, held) of the party's balance in `asset` (the base or the quote)."""
        if account == self.buyer:
            if asset == self.base:
                return self.buyer_base_total, self.buyer_base_held
            assert asset == self.quote, f"{asset} is neither asset of {self.symbol}"
            return self.buyer_quote_total, self.buyer_quote_held
        assert account == self.seller, f"account {account} is no party to this trade"
        if asset == self.base:
            return self.seller_base_total, self.seller_base_held
        assert asset == self.quote, f"{asset} is neither asset of {self.symbol}"
        return self.seller_quote_total, self.seller_quote_held


class BalanceChanged(Event, frozen=True, gc=False):
    """A participant's balance in one asset after a change to its total or its holds."""

    account: int
    asset: str
    total: int
    held: int

    @property
    def available(self) -> int:
        return self.total - self.held


class AssetListed(Event, frozen=True, gc=False):
    spec: AssetSpec


class AccountOpened(Event, frozen=True, gc=False):
    participant: Participant


class ReservesAttested(Event, frozen=True, gc=False):
    attestation: Attestation


class Deposited(Event, frozen=True, gc=False):
    """Tokens minted to a participant against reserves."""

    account: int
    asset: str
    amount: int
    transfer_id: int


class WithdrawalRequested(Event, frozen=True, gc=False):
    withdrawal: Withdrawal


class WithdrawalConfirmed(Event, frozen=True, gc=False):
    """The held tokens were burned: the custodian paid out."""

    withdrawal: Withdrawal
    transfer_id: int


class WithdrawalVoided(Event, frozen=True, gc=False):
    withdrawal: Withdrawal


class WithdrawalRescaled(Event, frozen=True, gc=False):
    """A split rescaled a pending withdrawal to new shares: it now holds
    `withdrawal.amount`, floor(`amount_before` x new / old); it stays pending."""

    withdrawal: Withdrawal
    amount_before: int


class InstrumentMatured(Event, frozen=True, gc=False):
    """A T-bill reached maturity: every holder was redeemed at par in one chain."""

    symbol: str
    holders: int
    face_total: int  # bill units burned
    paid_total: int  # cash units paid
    settlement_id: int  # 0 when nobody held the bill


class CorporateActionApplied(Event, frozen=True, gc=False):
    """One holder's part in a dividend or a split, as of the command's sequence point.

    `holding_before`/`holding_after` are the holder's total of `asset` (available and held);
    a dividend leaves them equal and pays `cash_received` units of `cash_asset`.
    """

    account: int
    kind: str  # "dividend" or "split"
    symbol: str
    asset: str
    ratio_new: int  # splits: the ratio; dividends: 0
    ratio_old: int
    amount: int  # dividends: the amount per share, amount / 10**amount_decimals; splits: 0
    amount_decimals: int
    holding_before: int
    holding_after: int
    cash_asset: str
    cash_received: int
    settlement_id: int  # the chain that booked it; 0 when nothing moved


class DividendPaid(Event, frozen=True, gc=False):
    """A cash dividend was paid to every holder of `asset` in one chain."""

    symbol: str
    asset: str
    cash_asset: str
    payer: int
    amount: int
    amount_decimals: int
    holders: int
    shares_total: int  # units of `asset` the dividend was paid on
    provided: int  # cash units the payer paid: the exact total rounded up
    paid_total: int  # cash units the holders received (floor each)
    residual: int  # provided - paid_total, booked to the rounding account
    settlement_id: int  # 0 when nobody held the asset


class SharesSplit(Event, frozen=True, gc=False, omit_defaults=True):
    """Every holding, resting order and the reserves of `asset` were rescaled.

    Encoded without the cash-in-lieu fields left at their defaults, so that the outcome of a
    split from before them, kept by `engine.operations`, snapshots and hashes as it did."""

    symbol: str
    asset: str
    ratio_new: int
    ratio_old: int
    holders: int
    supply_before: int
    supply_after: int
    rounding_holding: int  # the rounding account's units of `asset` after the split
    orders_amended: int
    orders_canceled: int
    settlement_id: int  # 0 when nobody held the asset
    # Cash in lieu of the fractions below the step (splits entered with `cash_in_lieu`), in
    # units of `cash_asset`: what `payer` provided (the exact total rounded up), what the
    # holders received (floor each), and the residual booked to the rounding account.
    payer: int = 0
    cash_asset: str = ""
    cash_provided: int = 0
    cash_paid: int = 0
    cash_residual: int = 0


class KeyIssued(Event, frozen=True, gc=False):
    """An API key was issued under a `cl_op_id` (`IssueKey`): its name, not its secret."""

    api_key: str
    account: int
    scopes: tuple[str, ...]


class KeyRevocationRecorded(Event, frozen=True, gc=False):
    """A key's revocation took its `cl_op_id` (`RevokeKey`): the gateway revokes the key."""

    api_key: str


class VenueAccountSwept(Event, frozen=True, gc=False):
    """The operator moved `amount` of `asset` out of the venue's own `venue_account` (fee
    income or rounding) to the participant `account`, in one transfer (kind `sweep`)."""

    venue_account: int
    account: int
    asset: str
    amount: int
    transfer_id: int


# The events an operator command's answer is made from (a withdrawal's id, a dividend's or
# a split's totals, an issued key's name): what `engine.operations` keeps to answer the
# command sent again.
Outcome = DividendPaid | SharesSplit | WithdrawalRequested | KeyIssued | VenueAccountSwept


class OperationRepeated(Event, frozen=True, gc=False):
    """An operator command came again under the `cl_op_id` it was done with, asking the same:
    nothing changed. `done_at_us` is when it was done and `outcome` what it produced, if its
    answer reports any (`engine.operations`)."""

    command: str
    cl_op_id: str
    done_at_us: int
    outcome: Outcome | None


AnyEvent = (
    OrderAccepted
    | CommandRejected
    | TradeExecuted
    | OrderCanceled
    | OrderExpired
    | DeadManArmed
    | DeadManTriggered
    | SelfTradePrevented
    | OrderAmended
    | InstrumentListed
    | InstrumentStatusChanged
    | ReferencePriceSet
    | OrderCapsSet
    | TradeSettled
    | BalanceChanged
    | AssetListed
    | AccountOpened
    | ReservesAttested
    | Deposited
    | WithdrawalRequested
    | WithdrawalConfirmed
    | WithdrawalVoided
    | InstrumentMatured
    | CorporateActionApplied
    | DividendPaid
    | SharesSplit
    | CancelOnDisconnectSet
    | WithdrawalRescaled  # appended
    | OperationRepeated  # appended
    | KeyIssued  # appended
    | ReserveStalenessSet  # appended
    | VenueAccountSwept  # appended
    | KeyRevocationRecorded  # appended (session 32)
)
