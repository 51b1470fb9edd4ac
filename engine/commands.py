"""Commands: the only inputs of `engine.venue.Venue`, named in the imperative.

Order entry and market operations come first; then the ledger's: assets, accounts,
reserves, deposits and two-phase withdrawals. Immutable, tagged msgspec structs so the
sequencer can journal them as they are. Time arrives inside each command (`ts_us`, stamped
by the sequencer); the engine reads no clock. Integer fields use 0 for "absent" (no price on
a market order, no change on an amend) so that the hot path never tests for None. Shape
errors (a market order with a price, say) are refused with `BAD_PARAM`, never trusted.
"""

from typing import ClassVar

import msgspec

from engine.enums import (
    CancelReason,
    InstrumentStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from engine.instrument import InstrumentSpec


class Command(msgspec.Struct, frozen=True, gc=False, tag=True, kw_only=True):
    ts_us: int = 0


# Encoded without the fields left at their defaults (`omit_defaults`): most of a place's
# fields are (tif, post-only, stp, quote_qty, cl_ord_id, tag, expiry, quote set), and the
# journal writes every place. A record of an IOC limit order: 179 bytes, ~250 ns to encode
# before `quote_set` came, 95 bytes, ~180 ns since; records written either way decode alike.
class PlaceOrder(Command, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    account: int
    symbol: str
    side: Side
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    price: int = 0  # required for limit orders, absent (0) for market orders
    qty: int = 0
    quote_qty: int = 0  # market buys only: spend at most this much of the quote asset
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.EXPIRE_TAKER
    cl_ord_id: str | None = None
    tag: str | None = None
    expire_at_us: int = 0  # gtd only
    # The `quote.mass` quote set the order is a quote of: opaque to matching, kept on the
    # order (journaled, in snapshots) so that the gateway finds its quotes after a restart.
    quote_set: str | None = None
    # Placed on a connection with cancel-on-disconnect on: opaque to matching, kept on the
    # order so that a start after a crash (no COD ran) cancels it (docs/protocol.md §4.3).
    cod: bool = False
    # Refuse a market buy whose `quote_qty` buys not one step at the best ask
    # (BELOW_MIN_NOTIONAL). Set where orders by quote_qty enter; absent (False) from records
    # written before the check, which must replay as they ran (accepted, then canceled).
    budget_checked: bool = False
    # At most once per cl_ord_id (docs/protocol.md §2.4): refused `DUPLICATE_CL_ORD_ID` if the
    # account placed an order with this cl_ord_id and `once` that the venue still remembers
    # (`engine.once`), open or closed. Needs a cl_ord_id. Absent (False) from older records.
    once: bool = False


class CancelOrder(Command, frozen=True, gc=False, kw_only=True):
    """Cancel one of the account's own open orders, by `order_id` or by `cl_ord_id`."""

    account: int
    order_id: int = 0
    cl_ord_id: str | None = None
    reason: CancelReason = CancelReason.USER


class AmendOrder(Command, frozen=True, gc=False, kw_only=True):
    """Change the price and/or the total quantity of an open order; 0 leaves a field as is."""

    account: int
    order_id: int = 0
    cl_ord_id: str | None = None
    price: int = 0
    qty: int = 0
    new_cl_ord_id: str | None = None
    # The instrument whose units `price` and `qty` are in, as the gateway read them: an amend
    # of an order on another instrument is refused (the gateway reads a batch's or a lagging
    # replica's orders ahead of the engine). None: not checked (the journals before it).
    symbol: str | None = None


class AmendPair(Command, frozen=True, gc=False, kw_only=True):
    """Amend a maker's two quotes of one account, bid then ask, as two `AmendOrder`s (by
    order id, no cl_ord_id, no symbol check) executed in turn: the same events, in the same
    order, and the same state as those two commands. One command and one journal record for
    the usual `quote.mass` requote (issue 12); `Venue.pair_split` says where the ask's events
    begin. Each side is refused or done on its own, as its `AmendOrder` would be."""

    account: int
    bid_order_id: int
    bid_price: int = 0
    bid_qty: int = 0
    ask_order_id: int
    ask_price: int = 0
    ask_qty: int = 0

    def sides(self) -> tuple[AmendOrder, AmendOrder]:
        """The two amends this command does, bid then ask."""
        ts_us, account = self.ts_us, self.account
        return (
            AmendOrder(
                ts_us=ts_us,
                account=account,
                order_id=self.bid_order_id,
                price=self.bid_price,
                qty=self.bid_qty,
            ),
            AmendOrder(
                ts_us=ts_us,
                account=account,
                order_id=self.ask_order_id,
                price=self.ask_price,
                qty=self.ask_qty,
            ),
        )


class CancelAll(Command, frozen=True, gc=False, kw_only=True):
    """Cancel every open order of the account that matches all the given filters."""

    account: int
    symbol: str | None = None
    side: Side | None = None
    tag: str | None = None
    reason: CancelReason = CancelReason.MASS_CANCEL


class OperatorCommand(Command, frozen=True, gc=False, kw_only=True):
    """A command of the operator's (the `admin.*` methods), which may carry a client operation
    id: the engine does a command sent again under the same `cl_op_id` only once
    (`engine.operations`). Absent (None) from records written before it, which replay as
    they were done."""

    cl_op_id: str | None = None
    # Fields (strings) that are not part of what the command asks, left out of the digest
    # `engine.operations` compares a repeat by: what the gateway chose, not the operator.
    UNASKED: ClassVar[tuple[str, ...]] = ()
    # Fields set where the command enters (the gateway's flags saying which rules it was
    # entered under: `lot_checked`...), added after the digest existed: left out of it, so a
    # command accepted before they existed and sent again after (or through a gateway of
    # another version) is the same command, and every digest taken before stays as it was.
    ENTRY_FLAGS: ClassVar[tuple[str, ...]] = ()
    # Operator's fields added after the digest existed: left out of it while at their
    # default (the command asks what it asked before they existed), in it otherwise.
    ADDED: ClassVar[tuple[str, ...]] = ()
    # The ids' space: "" for most; a command of another space may reuse another's id.
    ID_SPACE: ClassVar[str] = ""


class ListInstrument(OperatorCommand, frozen=True, gc=False, kw_only=True):
    spec: InstrumentSpec
    # Refuse a symbol that differs from a listed one only by case (INSTRUMENT_EXISTS), here
    # where listings are serialized (two gateways' checks of their replicas could both pass).
    # Set where a listing enters; absent (False) from records written before the check,
    # which must replay as they were accepted.
    unique_by_case: bool = False


class SetInstrumentStatus(OperatorCommand, frozen=True, gc=False, kw_only=True):
    symbol: str
    status: InstrumentStatus


class SetReferencePrice(OperatorCommand, frozen=True, gc=False, kw_only=True):
    symbol: str
    price: int
    # Refuse a price whose band's low puts one lot (min_qty) above `max_notional`, as
    # `SetOrderCaps.lot_checked` refuses such a cap. Set where prices enter; absent (False)
    # from records written before the check, which must replay as they were accepted.
    lot_checked: bool = False
    ENTRY_FLAGS: ClassVar[tuple[str, ...]] = ("lot_checked",)


class SetOrderCaps(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """Change an instrument's per-order caps (fat-finger filters); 0 removes a cap."""

    symbol: str
    max_qty: int = 0
    max_notional: int = 0
    # Refuse a `max_notional` below one lot's value (min_qty at the band's low), which no
    # order could pass. Set where caps enter; absent (False) from records written before
    # the check, which must replay as they were accepted.
    lot_checked: bool = False


class MatureInstrument(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """Mature a T-bill now, at the command's time: cancel its orders, redeem at par."""

    symbol: str


class AdvanceClock(Command, frozen=True, gc=False, kw_only=True):
    """Let time pass: expires every gtd order whose expire_at has come, matures the bills
    whose maturity has, and fires every dead-man's switch whose deadline has passed."""


class ArmDeadMan(Command, frozen=True, gc=False, kw_only=True):
    """Arm the account's dead-man's switch `timeout_ms` after the command's time, replacing
    the one armed before; 0 disarms it. Relative, not a deadline: the deadline comes from
    the sequencer's stamp (`ts_us`), so no other clock (a cluster's gateway's) decides it."""

    account: int
    timeout_ms: int


class SetCancelOnDisconnect(Command, frozen=True, gc=False, kw_only=True):
    """Mark (`cod` true) or unmark the account's open orders `order_ids` as canceled by a
    start after a crash: a connection turned cancel-on-disconnect on or off, and these are
    the open orders placed on it (docs/protocol.md §4.3), so that the state a replay rebuilds
    cancels what that connection's close would. Ids in ascending order, each once; an id
    that is no open order of the account (closed since the gateway listed it) is passed
    over. At most `VenueConfig.open_orders_per_account_max` ids, an account's open orders
    (20,000 by default: at most ~180 KB journaled, under the journal's 1 MiB a record)."""

    account: int
    cod: bool
    order_ids: tuple[int, ...] = ()


class ListAsset(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """Register an asset the ledger can hold (a cash token, an equity token, a T-bill)."""

    code: str
    scale: int
    unique_by_case: bool = False  # refuse a case twin (ASSET_EXISTS): as `ListInstrument`'s


class OpenAccount(OperatorCommand, frozen=True, gc=False, kw_only=True):
    account: int
    name: str
    kyc_approved: bool
    jurisdiction: str


class AttestReserves(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """The custodian's statement of what backs an asset, as of a time."""

    asset: str
    amount: int
    as_of_us: int
    # Refuse a statement dated before the asset's latest split (it counts the old shares).
    # Set where a statement enters; absent (False) from records written before the check,
    # which must replay as they were accepted.
    split_checked: bool = False


class Deposit(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """Mint tokens to a participant against attested reserves."""

    account: int
    asset: str
    amount: int


class RequestWithdrawal(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """Phase one of a burn: hold the tokens until the custodian pays out."""

    account: int
    asset: str
    amount: int
    # Keep the withdrawal pending through a split (rescaled) or its bill's maturity (not
    # redeemed): the custodian may have paid it out already, and voiding it there could pay
    # the holder twice. Set where a withdrawal enters; absent (False) from records written
    # before, whose withdrawals those actions voided, and which must replay as they ran.
    held_through_actions: bool = False
    # Record the command's time on the withdrawal (`requested_at_us`, for the operator's
    # list). Set where a withdrawal enters; absent (False) from records written before,
    # whose withdrawals must encode and hash as they did.
    requested_at_kept: bool = False
    ENTRY_FLAGS: ClassVar[tuple[str, ...]] = ("requested_at_kept",)


class ConfirmWithdrawal(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """Phase two of a burn: the custodian paid the withdrawal out; burn its held tokens.

    The `expected_*` fields are the operator's statement of which withdrawal `withdrawal_id`
    is (its account, asset, amount in units): one that differs is refused (BAD_PARAM), so
    that a mistyped id cannot burn another account's withdrawal. 0 / None: not checked, as
    in the records written before they existed (which replay as they ran, and whose
    `cl_op_id` digests stay as they were: `ADDED`)."""

    withdrawal_id: int
    expected_account: int = 0
    expected_asset: str | None = None
    expected_amount: int = 0
    # Remember how the withdrawal ended (`settlement.withdrawals.FinishedWithdrawal`), so a
    # later confirm or void of it says which it became. Set where the command enters; absent
    # (False) from records written before, which must replay and hash as they did.
    finish_kept: bool = False
    ADDED: ClassVar[tuple[str, ...]] = ("expected_account", "expected_asset", "expected_amount")
    ENTRY_FLAGS: ClassVar[tuple[str, ...]] = ("finish_kept",)


class VoidWithdrawal(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """Phase two, the other way: nothing was paid out; release the hold. The `expected_*`
    fields as `ConfirmWithdrawal`'s."""

    withdrawal_id: int
    expected_account: int = 0
    expected_asset: str | None = None
    expected_amount: int = 0
    # Remember how the withdrawal ended (`settlement.withdrawals.FinishedWithdrawal`), so a
    # later confirm or void of it says which it became. Set where the command enters; absent
    # (False) from records written before, which must replay and hash as they did.
    finish_kept: bool = False
    ADDED: ClassVar[tuple[str, ...]] = ("expected_account", "expected_asset", "expected_amount")
    ENTRY_FLAGS: ClassVar[tuple[str, ...]] = ("finish_kept",)


class PayDividend(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """Pay a cash dividend on the base asset of `symbol`, in its quote asset, from `payer`.

    The amount per share is `amount / 10**amount_decimals` whole cash per whole share; see
    `engine.corporate` and docs/corporate-actions.md for who is paid and how it rounds.
    """

    symbol: str
    payer: int
    amount: int
    amount_decimals: int
    # Refuse a dividend that pays no holder a single cash unit (a mistyped amount: the payer
    # would give the rounding account a unit for nothing). Set where a dividend enters;
    # absent (False) from records written before the check, which must replay as they ran.
    paid_checked: bool = False
    ENTRY_FLAGS: ClassVar[tuple[str, ...]] = ("paid_checked",)


class SplitShares(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """Split (or reverse-split) the base asset of `symbol`: `ratio_old` shares become
    `ratio_new` (2:1 is ratio_new 2, ratio_old 1; a 1:10 reverse split is 1 and 10)."""

    symbol: str
    ratio_new: int
    ratio_old: int
    # Rescale the instruments' `max_qty` caps with the shares (`max_notional`, in cash,
    # stays), so that no order the split rescaled is above its cap. Set where a split
    # enters; absent (False) from records written before, which must replay as they ran.
    rescale_caps: bool = False
    # Refuse a split whose new reference price puts one lot above a market's `max_notional`
    # at the band's low (`SetReferencePrice.lot_checked`). Set where a split enters; absent
    # (False) from records written before the check, which must replay as they ran.
    lot_checked: bool = False
    # Floor each holding to the step of `symbol` and pay what it gives up in cash at the
    # reference price, from `payer` (0: none named; refused if cash is due). Set where a split
    # enters; absent (False) from records written before, which floored to the unit.
    cash_in_lieu: bool = False
    payer: int = 0
    # Keep every pending withdrawal of the asset pending (rescaled), also those requested
    # before withdrawals were held through corporate actions. Set where a split enters;
    # absent (False) from records written before, which voided those and must replay so.
    withdrawals_held: bool = False
    # Not `rescale_caps`: it was in every digest taken (set since before ids existed).
    ENTRY_FLAGS: ClassVar[tuple[str, ...]] = ("lot_checked", "cash_in_lieu", "withdrawals_held")
    ADDED: ClassVar[tuple[str, ...]] = ("payer",)


class SetReserveStaleness(Command, frozen=True, gc=False, kw_only=True):
    """From now on, mint only against a reserve attestation at most `staleness_max_us` old
    (`Deposit`). Not the operator's: the core journals it at a start whose config's bound
    differs from the venue's, before any other command, so that every replay of the journal
    (a replica, a standby, `venue verify`) decides each deposit under the bound it was
    decided under, whatever its own config says. A venue starts at `VenueConfig`'s default."""

    staleness_max_us: int
    # Also the mark that every pending withdrawal stays pending through corporate actions
    # from here on, those requested before that rule too (`Ledger.hold_through_actions`), so
    # that a maturity cannot void one the custodian may have paid out. Set where the core
    # journals its rules (`Recovery._journal_rules`, core/recovery.py); absent (False) from
    # records written before, whose maturities voided such withdrawals and must replay so.
    withdrawals_held: bool = False


class IssueKey(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """An API key issued under the operator's `cl_op_id` (`admin.issue_key`), through the
    engine so that its id is decided where commands are put in order: the same id sent at
    once through two gateways issues one key. The key's name is the gateway's choice (so not
    asked: `UNASKED`); its secret never enters the journal (the gateway stores the key:
    api_keys.json, a cluster's key stream)."""

    account: int
    scopes: tuple[str, ...]  # sorted
    issued_by: str  # the admin API key that asked: another one asking again is refused
    api_key: str  # the new key's name
    UNASKED: ClassVar[tuple[str, ...]] = ("api_key",)
    ID_SPACE: ClassVar[str] = "key"  # apart, as when the gateways kept them (session 22)


class RevokeKey(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """The `cl_op_id` of an API key's revocation (`admin.revoke_key`), taken where commands
    are put in order, venue-wide as every other operator command's (since session 32; before,
    the gateway kept a revocation's id apart from them): a deposit under it is refused, and it
    under a deposit's. Only the id: the key is the gateway's to revoke (`revoked_keys.json`,
    a cluster's key stream), once the engine took the id. Sent only with a `cl_op_id`."""

    api_key: str  # the key revoked: the same id for another key is `CL_OP_ID_REUSED`


class SweepVenueAccount(OperatorCommand, frozen=True, gc=False, kw_only=True):
    """Move `amount` of `asset` from one of the venue's own income accounts (`venue_account`:
    fee income -2 or rounding -3, `settlement.transfers.SWEPT_ACCOUNTS`) to the participant
    `account`: how the operator takes the venue's income out (`admin.sweep`)."""

    venue_account: int
    asset: str
    amount: int
    account: int


class RefuseUnreadCommand(Command, frozen=True, gc=False, kw_only=True):
    """Refuse a command a cluster's active core could not read: a gateway of a later build
    sent one this build does not know (as `admin.sweep` was to session 25's), or a known one in
    a shape it cannot read. The core journals this in its place, so every replay, whatever
    its build, refuses it as it was refused (`UNSUPPORTED_COMMAND`); nothing else changes."""

    kind: str = ""  # the command's type as sent (at most `UNREAD_KIND_MAX`); "" if unreadable


UNREAD_KIND_MAX = 64  # a type name's characters kept (ours are < 30): a refusal's record is small


class ShiftDeadManDeadlines(Command, frozen=True, gc=False, kw_only=True):
    """Let no time from `since_us` to the command's own (`ts_us`) count against the armed
    dead-man's switches: a core became active (took over, or started on its journal), and
    since `since_us`, the time of the last command sequenced before, no core was active, so
    nothing traded and no re-arm could be sequenced. Every switch due after `since_us` is
    pushed back by that gap; one due at or before it was due while a core was active and
    stays due. Journaled by the core before any other command of its start, and only when
    it shifts some switch (`core.recovery`)."""

    since_us: int  # the venue's time before this command: its last command's `ts_us`


class RefuseCancelOnDisconnect(Command, frozen=True, gc=False, kw_only=True):
    """Refuse a cluster gateway's cancel-on-disconnect of the account's order `order_id`:
    when the core sequenced it, the order's cod was no longer that gateway's (another
    gateway's connection had requoted it and taken its cod, docs/protocol.md §4.3; the
    closing connection's gateway had not heard of it yet). The core journals this in the
    cancel's place, so every replica and replay keeps the order open alike without knowing
    whose cod it is; nothing changes, no event."""

    account: int
    order_id: int


AnyCommand = (
    PlaceOrder
    | CancelOrder
    | AmendOrder
    | CancelAll
    | ListInstrument
    | SetInstrumentStatus
    | SetReferencePrice
    | SetOrderCaps
    | MatureInstrument
    | AdvanceClock
    | ArmDeadMan
    | ListAsset
    | OpenAccount
    | AttestReserves
    | Deposit
    | RequestWithdrawal
    | ConfirmWithdrawal
    | VoidWithdrawal
    | PayDividend
    | SplitShares
    | SetCancelOnDisconnect  # appended: the journal's earlier commands decode as before
    | IssueKey  # appended
    | SetReserveStaleness  # appended
    | SweepVenueAccount  # appended
    | RefuseUnreadCommand  # appended
    | ShiftDeadManDeadlines  # appended
    | RefuseCancelOnDisconnect  # appended
    | AmendPair  # appended (session 31): an older build refuses a journal holding one
    | RevokeKey  # appended (session 32): likewise
)
