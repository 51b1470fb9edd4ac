"""Custody commands: assets, accounts (and their keys), reserves, deposits and withdrawals.

Owns the translation of the ledger's operator commands into `settlement.ledger` calls and
their events, with the ledger's refusals reported as `CommandRejected` under the stable
error codes. Deposits mint only against a fresh attestation (`reserve_staleness_max_us`);
withdrawals hold first and burn on confirmation. A matured T-bill's token takes no more
attestations or mints: it has been redeemed, and new tokens would be stranded. No supply may
pass `SUPPLY_MAX`, counting the par every unmatured bill will mint in its cash at maturity:
a deposit that would let one pass is refused (SUPPLY_OUT_OF_RANGE), and so is a bill listed
on a token already out in such numbers. The operator takes the venue's income out of its
fee income and rounding accounts with a sweep to a participant (`SweepVenueAccount`), never
more than they hold. Balances changed here are reported with `BalanceChanged` like those
changed by trades.
"""

from collections.abc import Callable, Container, Mapping
from typing import Any

from engine.clearing import balance_changed
from engine.commands import (
    AttestReserves,
    Command,
    ConfirmWithdrawal,
    Deposit,
    IssueKey,
    ListAsset,
    OpenAccount,
    RequestWithdrawal,
    RevokeKey,
    SweepVenueAccount,
    VoidWithdrawal,
)
from engine.enums import InstrumentKind
from engine.events import (
    AccountOpened,
    AssetListed,
    CommandRejected,
    Deposited,
    Event,
    Fact,
    KeyIssued,
    KeyRevocationRecorded,
    ReservesAttested,
    VenueAccountSwept,
    WithdrawalConfirmed,
    WithdrawalRequested,
    WithdrawalVoided,
)
from engine.instrument import InstrumentSpec, case_twin_refusal, is_name
from engine.market import Market
from engine.reasons import ErrorCode
from engine.units import format_units, unit_slip
from settlement.ledger import (
    SUPPLY_MAX,
    AssetSpec,
    Attestation,
    Ledger,
    Participant,
    Redemptions,
    Refused,
    Withdrawal,
)
from settlement.tbill import par_proceeds_units
from settlement.transfers import ISSUANCE, REDEMPTION, SWEPT_ACCOUNTS, TransferKind

Handler = Callable[[Any, list[Event]], None]

# How far an attestation's as_of may lead the command's time: the operator's clock stamps it
# (`venue admin attest-reserves`), and a minute is the skew a logon's recv_window allows.
AS_OF_AHEAD_MAX_US = 60_000_000
# The venue's accounts a sweep refuses by name: they mirror supply and par, not income.
VENUE_ACCOUNT_NAMES = {ISSUANCE: "issuance", REDEMPTION: "redemption"}


class Custody:
    def __init__(
        self,
        ledger: Ledger,
        reserve_staleness_max_us: int,
        matured_assets: Container[str] = (),
        markets: Mapping[str, Market] | None = None,
    ) -> None:
        self.ledger = ledger
        self.reserve_staleness_max_us = reserve_staleness_max_us
        self.matured_assets = matured_assets  # the venue's, kept up to date by it
        self.markets = markets if markets is not None else {}  # the venue's, likewise

    def handlers(self) -> dict[type[Command], Handler]:
        return {
            ListAsset: self._list_asset,
            OpenAccount: self._open_account,
            AttestReserves: self._attest,
            Deposit: self._deposit,
            RequestWithdrawal: self._request_withdrawal,
            ConfirmWithdrawal: self._confirm_withdrawal,
            VoidWithdrawal: self._void_withdrawal,
            IssueKey: self._issue_key,
            RevokeKey: self._revoke_key,
            SweepVenueAccount: self._sweep,
        }

    def _list_asset(self, cmd: ListAsset, events: list[Event]) -> None:
        if not is_name(cmd.code):
            detail = "asset codes are printable ASCII characters, no spaces"
            _refused(Refused("BAD_PARAM", detail), cmd, "list_asset", events)
            return
        if cmd.unique_by_case:  # see `ListInstrument.unique_by_case`
            twin = case_twin_refusal(cmd.code, self.ledger.assets, "asset {} exists")
            if twin is not None:
                _refused(Refused("ASSET_EXISTS", twin), cmd, "list_asset", events)
                return
        spec = AssetSpec(cmd.code, cmd.scale)
        if not _refused(self.ledger.add_asset(spec), cmd, "list_asset", events):
            events.append(AssetListed(cmd.ts_us, spec))

    def _open_account(self, cmd: OpenAccount, events: list[Event]) -> None:
        if not cmd.name.isprintable():  # a newline in it would forge a row of a report
            detail = (
                "account names are printable characters: no line breaks, tabs or other"
                " control, format or invisible characters (such as a no-break space)"
            )
            _refused(Refused("BAD_PARAM", detail), cmd, "open_account", events)
            return
        participant = Participant(cmd.account, cmd.name, cmd.kyc_approved, cmd.jurisdiction)
        if not _refused(self.ledger.add_participant(participant), cmd, "open_account", events):
            events.append(AccountOpened(cmd.ts_us, participant))

    def _issue_key(self, cmd: IssueKey, events: list[Event]) -> None:
        """Only an account's key: the key itself (its secret) is the gateway's to store."""
        if cmd.account not in self.ledger.participants:
            refused = Refused("UNKNOWN_ACCOUNT", f"no account {cmd.account}")
            _refused(refused, cmd, "issue_key", events)
            return
        events.append(KeyIssued(cmd.ts_us, cmd.api_key, cmd.account, cmd.scopes))

    def _revoke_key(self, cmd: RevokeKey, events: list[Event]) -> None:
        """Only the revocation's id (taken by `engine.operations`' guard): whether the key
        can be revoked is the gateway's to decide, which holds the keys."""
        if cmd.cl_op_id is None:  # no gateway sends one: nothing to take
            refused = Refused("BAD_PARAM", "a key's revocation is journaled only under a cl_op_id")
            _refused(refused, cmd, "revoke_key", events)
            return
        events.append(KeyRevocationRecorded(cmd.ts_us, cmd.api_key))

    def _attest(self, cmd: AttestReserves, events: list[Event]) -> None:
        # milliseconds only, as ever: one in seconds is refused by the gateway (gateway/wire.py,
        # since session 36), so a journal holding one it took replays as it ran
        slip = unit_slip("as_of", cmd.as_of_us, cmd.ts_us, seconds=False)
        if slip is not None:
            _refused(Refused("BAD_PARAM", slip), cmd, "attest_reserves", events)
            return
        if cmd.as_of_us > cmd.ts_us + AS_OF_AHEAD_MAX_US:  # it would stay fresh, block the next
            detail = f"as_of {cmd.as_of_us} is in the future (now {cmd.ts_us} µs)"
            _refused(Refused("BAD_PARAM", detail), cmd, "attest_reserves", events)
            return
        attestation = Attestation(cmd.asset, cmd.amount, cmd.as_of_us)
        refusal = self.ledger.attest(
            attestation, self.matured_assets, before_split_refused=cmd.split_checked
        )
        if not _refused(refusal, cmd, "attest_reserves", events):
            events.append(ReservesAttested(cmd.ts_us, attestation))

    def _deposit(self, cmd: Deposit, events: list[Event]) -> None:
        if cmd.amount <= 0:
            _refused(Refused("BAD_PARAM", "deposits are positive"), cmd, "deposit", events)
            return
        booked = self.ledger.mint(
            cmd.account,
            cmd.asset,
            cmd.amount,
            cmd.ts_us,
            self.reserve_staleness_max_us,
            self.matured_assets,
            self.redemptions(),
        )
        if _refused(booked, cmd, "deposit", events):
            return
        assert isinstance(booked, list)
        events.append(
            Deposited(cmd.ts_us, cmd.account, cmd.asset, cmd.amount, booked[0].transfer_id)
        )
        self._balance_changed(cmd.account, cmd.asset, cmd.ts_us, events)

    def redemptions(self) -> Redemptions:
        """What the token of each listed bill pays at maturity: the tokens out of a bill not
        yet matured, and those a pending withdrawal holds through its maturity (a void pays
        them par then; every other token of a matured bill was burned)."""
        return {
            market.spec.base: _par_terms(market.spec)
            for market in self.markets.values()
            if market.spec.kind is InstrumentKind.TBILL
        }

    def listing_problem(self, spec: InstrumentSpec) -> str | None:
        """Why listing this bill would let the par its tokens already out pay at maturity
        take the supply of its cash past `SUPPLY_MAX`, or None."""
        if spec.kind is not InstrumentKind.TBILL:
            return None
        redemptions = {**self.redemptions(), spec.base: _par_terms(spec)}
        if self.ledger.supply_at_maturity(spec.quote, redemptions) > SUPPLY_MAX:
            return (
                f"the par {spec.base} pays at maturity would take the supply of {spec.quote}"
                f" past {SUPPLY_MAX} units"
            )
        return None

    def _request_withdrawal(self, cmd: RequestWithdrawal, events: list[Event]) -> None:
        requested_at_us = cmd.ts_us if cmd.requested_at_kept else 0
        result = self.ledger.request_withdrawal(
            cmd.account, cmd.asset, cmd.amount, cmd.held_through_actions, requested_at_us
        )
        if isinstance(result, Refused) and result.reason == "INSUFFICIENT_BALANCE":
            scale = self.ledger.assets[cmd.asset].scale
            # a get, not `ledger.balance`: a refusal must not create an empty balance row
            balance = self.ledger.balances.get((cmd.account, cmd.asset))
            available = balance.available if balance is not None else 0
            facts = (("needed", cmd.amount, scale), ("available", available, scale))
            # The ledger counts in integer units; the wire and its reader count in decimals.
            detail = (
                f"account {cmd.account} has {format_units(available, scale)} {cmd.asset}"
                f" available, {format_units(cmd.amount, scale)} asked"
            )
            said = Refused(result.reason, detail)
            _refused(said, cmd, "request_withdrawal", events, facts, cmd.asset)
            return
        if _refused(result, cmd, "request_withdrawal", events):
            return
        assert isinstance(result, Withdrawal)
        events.append(WithdrawalRequested(cmd.ts_us, result))
        self._balance_changed(cmd.account, cmd.asset, cmd.ts_us, events)

    def _confirm_withdrawal(self, cmd: ConfirmWithdrawal, events: list[Event]) -> None:
        if _refused(self._not_as_expected(cmd), cmd, "confirm_withdrawal", events):
            return
        withdrawal = self.ledger.withdrawals.get(cmd.withdrawal_id)
        booked = self.ledger.confirm_withdrawal(cmd.withdrawal_id, cmd.ts_us, cmd.finish_kept)
        if _refused(booked, cmd, "confirm_withdrawal", events):
            return
        assert withdrawal is not None and isinstance(booked, list)
        events.append(WithdrawalConfirmed(cmd.ts_us, withdrawal, booked[0].transfer_id))
        self._balance_changed(withdrawal.account, withdrawal.asset, cmd.ts_us, events)

    def _void_withdrawal(self, cmd: VoidWithdrawal, events: list[Event]) -> None:
        if _refused(self._not_as_expected(cmd), cmd, "void_withdrawal", events):
            return
        self.void(cmd.withdrawal_id, cmd.ts_us, events, cmd)

    def _not_as_expected(self, cmd: ConfirmWithdrawal | VoidWithdrawal) -> Refused | None:
        """Why the pending withdrawal `cmd` names is not the one the operator expects (its
        `expected_*` fields: another account, asset or amount), saying what it really is;
        None if it is, if nothing is expected, or if there is none (`UNKNOWN_WITHDRAWAL`,
        the ledger's, comes first)."""
        withdrawal = self.ledger.withdrawals.get(cmd.withdrawal_id)
        if withdrawal is None:
            return None
        scale = self.ledger.assets[withdrawal.asset].scale
        expected_asset = cmd.expected_asset
        # the gateway read the expected amount at the expected asset's scale
        expected_scale = scale
        if expected_asset is not None and expected_asset in self.ledger.assets:
            expected_scale = self.ledger.assets[expected_asset].scale
        wrong = []
        if cmd.expected_account and cmd.expected_account != withdrawal.account:
            wrong.append(f"account {cmd.expected_account}")
        if expected_asset is not None and expected_asset != withdrawal.asset:
            wrong.append(f"asset {expected_asset}")
        if cmd.expected_amount and cmd.expected_amount != withdrawal.amount:
            wrong.append(f"amount {format_units(cmd.expected_amount, expected_scale)}")
        if not wrong:
            return None
        actual = format_units(withdrawal.amount, scale)
        detail = (
            f"withdrawal {withdrawal.withdrawal_id} is account {withdrawal.account}'s"
            f" {actual} {withdrawal.asset}, not as expected ({', '.join(wrong)}): nothing done"
        )
        return Refused("BAD_PARAM", detail)

    def void(
        self, withdrawal_id: int, ts: int, events: list[Event], cmd: Command | None = None
    ) -> None:
        """Release a pending withdrawal (on request; or, requested before withdrawals were
        held through corporate actions, when its asset splits or matures). The tokens of a
        bill that has matured meanwhile are then redeemed at par, as its maturity redeemed
        every other holder's."""
        remember = isinstance(cmd, VoidWithdrawal) and cmd.finish_kept
        result = self.ledger.void_withdrawal(withdrawal_id, ts, remember)
        if cmd is not None and _refused(result, cmd, "void_withdrawal", events):
            return
        assert isinstance(result, Withdrawal)
        events.append(WithdrawalVoided(ts, result))
        if result.held_through_actions and result.asset in self.matured_assets:
            self._redeem_voided(result, ts, events)
        self._balance_changed(result.account, result.asset, ts, events)

    def _redeem_voided(self, withdrawal: Withdrawal, ts: int, events: list[Event]) -> None:
        """Pay par for the tokens a voided withdrawal of a matured bill gave back: exactly
        what the maturity paid every other holder per unit, in one chain."""
        bill = next(
            market.spec
            for market in self.markets.values()
            if market.spec.kind is InstrumentKind.TBILL and market.spec.base == withdrawal.asset
        )
        cash, per_unit = _par_terms(bill)
        holders = [(withdrawal.account, withdrawal.amount)]
        self.ledger.redeem_at_par(withdrawal.asset, cash, per_unit, ts, holders)
        self._balance_changed(withdrawal.account, cash, ts, events)

    def _sweep(self, cmd: SweepVenueAccount, events: list[Event]) -> None:
        """Take the venue's income out: one `sweep` transfer from its fee income or rounding
        account to a participant, booked and stored as every other transfer."""
        refusal = self._sweep_refusal(cmd)
        if refusal is not None:
            facts: tuple[Fact, ...] = ()
            if refusal.reason == "INSUFFICIENT_BALANCE":
                scale = self.ledger.assets[cmd.asset].scale
                available = max(self._venue_total(cmd.venue_account, cmd.asset), 0)
                facts = (("needed", cmd.amount, scale), ("available", available, scale))
            asset = cmd.asset if facts else None
            _refused(refusal, cmd, "sweep_venue_account", events, facts, asset)
            return
        legs = [(cmd.venue_account, cmd.account, cmd.asset, cmd.amount, TransferKind.SWEEP)]
        booked = self.ledger.book(legs, cmd.ts_us)
        assert isinstance(booked, list), f"a checked sweep failed to book: {booked}"
        swept = VenueAccountSwept(
            cmd.ts_us, cmd.venue_account, cmd.account, cmd.asset, cmd.amount, booked[0].transfer_id
        )
        events.append(swept)
        self._balance_changed(cmd.account, cmd.asset, cmd.ts_us, events)

    def _sweep_refusal(self, cmd: SweepVenueAccount) -> Refused | None:
        """Why the sweep cannot be done (`SWEEP_PRECEDENCE`), or None. The ledger checks no
        venue account's balance (issuance and rounding may go below zero), so this does."""
        source = cmd.venue_account
        if cmd.amount <= 0:
            return Refused("BAD_PARAM", "a sweep's amount is positive")
        if source not in SWEPT_ACCOUNTS:
            named = VENUE_ACCOUNT_NAMES.get(source)
            said = f"({named}) is never swept" if named else "is no venue account"
            detail = (
                f"account {source} {said}: only the venue's income is, in fee income (-2)"
                " and rounding (-3)"
            )
            return Refused("BAD_PARAM", detail)
        if cmd.account not in self.ledger.participants:
            return Refused("UNKNOWN_ACCOUNT", f"no account {cmd.account} to sweep to")
        if cmd.asset not in self.ledger.assets:
            return Refused("UNKNOWN_ASSET", f"unknown asset {cmd.asset}")
        available = self._venue_total(source, cmd.asset)
        if cmd.amount > available:
            scale = self.ledger.assets[cmd.asset].scale
            detail = (
                f"the venue's {SWEPT_ACCOUNTS[source]} account ({source}) holds"
                f" {format_units(max(available, 0), scale)} {cmd.asset},"
                f" {format_units(cmd.amount, scale)} asked: nothing swept"
            )
            return Refused("INSUFFICIENT_BALANCE", detail)
        return None

    def _venue_total(self, account: int, asset: str) -> int:
        """The venue account's total in `asset` (0 if it has none: a get makes no row)."""
        balance = self.ledger.balances.get((account, asset))
        return balance.total if balance is not None else 0

    def _balance_changed(self, account: int, asset: str, ts: int, events: list[Event]) -> None:
        events.append(balance_changed(self.ledger, account, asset, ts))


def _par_terms(spec: InstrumentSpec) -> tuple[str, int]:
    """A bill's cash asset and the cash units one unit of its face pays at maturity."""
    return spec.quote, par_proceeds_units(1, spec.qty_decimals, spec.quote_decimals)


def _refused(
    result: object,
    cmd: Command,
    name: str,
    events: list[Event],
    facts: tuple[Fact, ...] = (),
    asset: str | None = None,
) -> bool:
    """Report a ledger refusal as a rejection; True if there was one."""
    if not isinstance(result, Refused):
        return False
    events.append(
        CommandRejected(
            cmd.ts_us,
            name,
            ErrorCode[result.reason],
            result.detail,
            getattr(cmd, "account", 0),
            None,
            0,
            None,
            facts,
            asset,
        )
    )
    return True
