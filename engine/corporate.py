"""Corporate actions on tokenized equities as engine commands: cash dividends and splits.

Owns the dispatch of `PayDividend` and `SplitShares`, the checks both share (a known equity;
the rejects), the `CorporateActionApplied` event each holder sees, and the whole dividend:
which instrument and assets it names, its refusals and its events; the ledger's arithmetic
is `settlement.corporate`'s. A split's work on markets, orders and withdrawals is
`engine.splits`'s. Both act at the command's sequence point; neither adds state of its own.
Rules and examples: docs/corporate-actions.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.clearing import balance_changed
from engine.commands import Command, PayDividend, SplitShares
from engine.enums import InstrumentKind
from engine.events import CorporateActionApplied, DividendPaid, Event, Fact
from engine.instrument import unknown_symbol
from engine.market import Market
from engine.reasons import ErrorCode
from engine.splits import Splits
from engine.units import SCALE_MAX, UNITS_MAX
from settlement.corporate import DividendShort, Entitlement, pay_dividend
from settlement.ledger import Ledger, Refused

if TYPE_CHECKING:
    from engine.venue import Venue

E = ErrorCode

Handler = Callable[[Any, list[Event]], None]


class Corporate:
    """The venue's corporate actions: one per venue with a ledger, built by `Venue`, which
    takes its `handlers`. Pays dividends itself; hands splits to its `Splits`."""

    def __init__(self, venue: Venue, ledger: Ledger) -> None:
        self.venue = venue
        self.ledger = ledger
        self.splits = Splits(self)

    def handlers(self) -> dict[type[Command], Handler]:
        return {PayDividend: self._pay_dividend, SplitShares: self.splits.split}

    # ----------------------------------------------------------------- dividend

    def _pay_dividend(self, cmd: PayDividend, events: list[Event]) -> None:
        name = "pay_dividend"
        if not (0 < cmd.amount <= UNITS_MAX and 0 <= cmd.amount_decimals <= SCALE_MAX):
            self.reject(events, cmd, name, E.BAD_PARAM, "amount must be positive")
            return
        market = self.equity_market(cmd, name, events)
        if market is None:
            return
        spec = market.spec
        ts = cmd.ts_us
        booked = pay_dividend(
            self.ledger,
            spec.base,
            spec.quote,
            cmd.payer,
            cmd.amount,
            cmd.amount_decimals,
            ts,
            unpaid_refused=cmd.paid_checked,
        )
        if isinstance(booked, Refused):
            facts: tuple[Fact, ...] = ()
            if isinstance(booked, DividendShort):  # the numbers, as every INSUFFICIENT_BALANCE
                cash = spec.quote_decimals  # the cash asset's scale
                facts = (("needed", booked.needed, cash), ("available", booked.available, cash))
            asset = spec.quote if facts else None
            self.reject(events, cmd, name, ErrorCode[booked.reason], booked.detail, facts, asset)
            return
        chain_id = booked.transfers[0].chain_id if booked.transfers else 0
        for entitlement in booked.entitlements:
            events.append(self.applied(cmd, market, "dividend", entitlement, chain_id))
            if entitlement.cash:
                events.append(balance_changed(self.ledger, entitlement.account, spec.quote, ts))
        if booked.transfers:
            events.append(balance_changed(self.ledger, cmd.payer, spec.quote, ts))
        events.append(
            DividendPaid(
                ts,
                market.symbol,
                spec.base,
                spec.quote,
                cmd.payer,
                cmd.amount,
                cmd.amount_decimals,
                len(booked.entitlements),
                booked.shares_total,
                booked.provided,
                booked.provided - booked.residual,
                booked.residual,
                chain_id,
            )
        )

    # ----------------------------------------------------------------- shared with splits

    def equity_market(
        self, cmd: PayDividend | SplitShares, name: str, events: list[Event]
    ) -> Market | None:
        """The equity the command names, or None after rejecting it (unknown, not an equity)."""
        market = self.venue.markets.get(cmd.symbol)
        if market is None:
            detail = unknown_symbol(cmd.symbol, self.venue.markets)
            self.reject(events, cmd, name, E.UNKNOWN_SYMBOL, detail)
        elif market.spec.kind is not InstrumentKind.EQUITY:
            self.reject(events, cmd, name, E.BAD_PARAM, f"{cmd.symbol} is not an equity")
            market = None
        return market

    @staticmethod
    def applied(
        cmd: PayDividend | SplitShares,
        market: Market,
        kind: str,
        entitlement: Entitlement,
        chain_id: int,
    ) -> CorporateActionApplied:
        """What the action did to one holder: its holding before and after, its cash."""
        ratio = (cmd.ratio_new, cmd.ratio_old) if isinstance(cmd, SplitShares) else (0, 0)
        amount = (cmd.amount, cmd.amount_decimals) if isinstance(cmd, PayDividend) else (0, 0)
        return CorporateActionApplied(
            cmd.ts_us,
            entitlement.account,
            kind,
            market.symbol,
            market.spec.base,
            *ratio,
            *amount,
            entitlement.holding_before,
            entitlement.holding_after,
            market.spec.quote,
            entitlement.cash,
            chain_id,
        )

    def reject(
        self,
        events: list[Event],
        cmd: Command,
        name: str,
        reason: ErrorCode,
        detail: str,
        facts: tuple[Fact, ...] = (),
        asset: str | None = None,
    ) -> None:
        """Refuse the command with `reason`: the venue's reject, naming no order."""
        self.venue._reject(events, cmd, name, reason, detail, 0, facts, asset)
