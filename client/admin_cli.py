"""`venue admin ...`: operator commands sent to a running venue over its websocket API.

Owns the command line of the `admin.*` methods (`gateway.wire.METHODS`): flags to params, one
logged-on connection per command, the result printed as JSON. Leaves validation and the work
to the server. Credentials: `--key`/`--secret`, else VENUE_ADMIN_KEY / VENUE_ADMIN_SECRET,
else the first admin key in the config (the demo key of `venue.toml`). The venue: `--url`,
else the trade endpoint at the config's `[venue]` host and port, as `venue serve` listens.
Exit status: 0 done, 1 the venue refused (changed nothing) or the CLI sent nothing (`mature`
before the bill's date without it), 2 no answer (cannot connect, the connection dropped, no
connection within `CONNECT_TIMEOUT_S`, no answer within `ANSWER_WAIT_S`, which outlasts a
cluster's core takeover, or a cluster gateway's 504 OUTCOME_UNKNOWN: the command may yet be
done). A wait past `WAIT_NOTE_S` says so on stderr.

Every command goes with a client operation id (`cl_op_id`: `--cl-op-id`, or a new one per
invocation), under which the venue does it at most once. So a command that got no answer
once it was sent (the venue may have done it: a deposit, say, or an `issue-key`) is sent
again with the same id (a calm line says so: it is safe), up to `RETRY_PAUSES_S` times; the
answer says `"repeated": true` if the first had been done (an `issue-key`'s shows the same
key and secret to the same admin key). Still no answer: the line says so and gives the id,
for the operator to send the command again with `--cl-op-id` just as safely (once the venue
listens, if it was not listening: a restart replays the journal first), unless the venue
said to give a new one (an `issue-key` whose key was never stored).

An UNKNOWN_ASSET or UNKNOWN_SYMBOL refusal says what the venue lists like the name given
(`aapl`: did you mean AAPLx?), read from the public `reserves` and `instruments` queries.

`mature` before the bill's date needs that date (`--maturity`, read from `instruments`
before the command is sent: otherwise nothing is sent, exit 1: an early maturity cannot be
undone). It also prints, beside the answer, its cash asset's reserves as they are now
(`"reserves_due"`), and, when they no longer cover its supply, says on stderr that an
attestation of them is due: the maturity minted the par it paid. `attest-reserves` prints
the asset's reserves after the statement (`"reserves"`), and says on stderr when the
statement leaves the supply uncovered (deposits are refused until the supply is within an
attestation again: a statement that covers it, or burns), or is as of a time already past
the config's reserve staleness (deposits are refused RESERVES_STALE until a later one).
All are read after the command's answer, on a connection of their own: a follow-up that
gets no answer leaves the answer (or the refusal) as it was, and never resends the command.

`withdrawals` is the one read (`admin.withdrawals`, the pending withdrawals): it changes
nothing, so it takes no `cl_op_id` and is not sent again. `confirm-withdrawal` and
`void-withdrawal` take what the operator expects the withdrawal to be (`--account`,
`--asset`, `--amount`: another one is refused, nothing done) and print, beside the answer,
the withdrawal as the venue listed it just before (`"withdrawal"`). `sweep` takes the
venue's income (its fee income or rounding account) out to a participant account.
"""

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, get_args

import msgspec
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from cli.arguments import EPOCH, time_us
from cli.failures import CommandFailed, check_trade_url
from cli.venue_url import URL_DEFAULT, config_trade_url
from client.sdk import ConnectionLost, VenueClient, VenueError
from core import config as venue_config
from engine.enums import InstrumentKind, InstrumentStatus
from engine.instrument import case_twin, likely_symbols
from engine.operations import CL_OP_ID_LENGTH_MAX
from gateway.wire import INT_MAX, MESSAGE_BYTES_MAX, Scope
from settlement.reserves import HOUR_US
from settlement.transfers import SWEPT_ACCOUNTS

URL_HELP = (
    "the venue's trade endpoint (default: the config's [venue] host and port, where"
    f" `venue serve` listens; without a config, {URL_DEFAULT})"
)
KEY_ENV, SECRET_ENV = "VENUE_ADMIN_KEY", "VENUE_ADMIN_SECRET"
# A venue that is up answers in milliseconds: a wait past this is said, and on what, rather
# than left silent up to its bound (session 32's sweep: 10 s, then 35 s, without a word).
WAIT_NOTE_S = 2.0
WAITING = "venue admin: waiting for the venue at {url} to {what} (up to {seconds:g} s)"
CONNECT_TIMEOUT_S = 10.0  # connect and log on: well under a second on a venue that is up
# The wait for a command's answer once sent. A cluster's core takeover answers within about
# 13 s (the core's 10 s lease TTL, the standby's poll, the gateway's resend: docs/cluster.md),
# and a gateway with no outcome after `[venue] outcome_wait_ms` (20 s by default, at most
# 29 s: core.config) answers 504 OUTCOME_UNKNOWN itself: waiting past both, with room for the
# answer's way back, the answer (or that 504) comes before this gives up. Before session 26
# the whole call had 10 s, cut off every takeover mid-way; then 25 s, short of the longest
# outcome wait a config may set.
ANSWER_WAIT_S = 35.0
# A follow-up read (suggestions, reserves): a venue that answered the command answers these
# at once; one that does not within this is left out, the answer printed as it was.
FOLLOW_UP_WAIT_S = 5.0
# The pauses before each resend of a command that got no answer once sent: a dropped link
# or a venue restarting (a restart replays its journal: seconds) is over within them.
RETRY_PAUSES_S = (0.5, 1.0, 2.0)
EXIT_OK, EXIT_REFUSED, EXIT_NO_ANSWER = 0, 1, 2
SENT_NO_ANSWER = (
    "; the command was sent (cl_op_id {cl_op_id}) and the venue may have done it: send it"
    " again with {flags}, which the venue does at most once"
)
# Added when the last resend found no venue listening: a one-process venue restarting
# replays its journal before it listens, which may take longer than `RETRY_PAUSES_S`.
NOT_LISTENING_YET = (
    " (a venue restarting replays its journal before it listens, logging `recovering`: send"
    " it once the venue says `listening`)"
)
# The end of a gateway's 504 to an `issue-key` sent again whose key was never stored
# (gateway.key_issuing): that id is spent, so the advice above, to send it again under it,
# would contradict the venue's own, which is printed instead.
NEW_ID_ADVICE = "give a new cl_op_id"
RESENDING = (
    "venue admin: no answer yet from {url} ({why}); sending the same command again under its"
    " cl_op_id {cl_op_id}, which the venue does at most once: this is safe"
)
RESERVES_DUE = (  # said only when the reserves no longer cover the supply
    "venue admin: an attestation of {asset} reserves is now due: the maturity minted the par"
    " it paid, so {asset}'s supply is {supply} (last attested: {attested}); once the"
    " custodian holds the par from the Treasury: venue admin attest-reserves {asset} AMOUNT"
)
RESERVES_SHORT = (  # said only when the statement leaves the supply uncovered
    "venue admin: this statement leaves {asset} uncovered: {asset}'s supply, {supply}, is past"
    " the {attested} attested, so deposits of {asset} are refused until the supply is within"
    " an attestation again (a statement that covers it, or burns: confirmed withdrawals);"
    " a mistyped amount: send the right one, as of now, with venue admin attest-reserves"
    " {asset} AMOUNT"
)
RESERVES_STALE_NOTE = (  # said only when a statement taken is past the config's staleness
    "venue admin: this statement, as of {as_of} µs, is {age} h old, past the {bound} h of"
    " {config}'s reserve_staleness_hours, so deposits of {asset} are refused RESERVES_STALE"
    " until a later one (one as of now, by default without --as-of)"
)
SCOPES = get_args(Scope)  # what an API key may be issued for: read, trade, admin
CL_OP_ID_PREFIX = "cli-"  # then 24 hex digits: 96 random bits, 28 characters of at most 36
WITHDRAWAL_METHODS = frozenset({"admin.confirm_withdrawal", "admin.void_withdrawal"})

Build = Callable[[argparse.Namespace], dict[str, Any]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help=URL_HELP)
    common.add_argument("--key", default=None, help=f"default: ${KEY_ENV}, else the config's")
    common.add_argument("--secret", default=None, help=f"default: ${SECRET_ENV}, else the config's")
    common.add_argument("--config", type=Path, default=Path("venue.toml"), help="for the key")
    commands = parser.add_subparsers(
        title="admin commands", dest="admin_command", metavar="COMMAND", required=True
    )

    def command(
        name: str,
        method: str,
        build: Build,
        text: str,
        description: str | None = None,
        read: bool = False,
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            parents=[common],
            help=text,
            description=description or text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(admin_method=method, admin_params=build, admin_read=read)
        if read:  # changes nothing: no id to do it at most once under
            return sub
        sub.add_argument(
            "--cl-op-id",
            type=cl_op_id,
            default=None,
            help="this command's id (1-36 characters): sent again under it, the venue does"
            " it at most once; default: a new one (shown if no answer came)",
        )
        return sub

    listing = command("list-instrument", "admin.list_instrument", _instrument, "list a market")
    for flag, text in _INSTRUMENT_TEXT_FLAGS:
        listing.add_argument(flag, required=True, help=text)
    listing.add_argument(
        "--kind",
        required=True,
        choices=[k.value for k in InstrumentKind],
        help="equity, or tbill (priced per 100 of face; needs --maturity)",
    )
    listing.add_argument(
        "--maker-fee-bps", type=int, default=0, help="fee of the resting side (default 0)"
    )
    listing.add_argument(
        "--taker-fee-bps", type=int, default=0, help="fee of the incoming side (default 0)"
    )
    listing.add_argument("--maturity", type=iso_date, default=None, help="YYYY-MM-DD, T-bills only")
    listing.add_argument(
        "--excluded-jurisdictions", type=jurisdictions, default="", help="e.g. US,CN"
    )
    listing.add_argument("--max-qty", default=None, help="per-order cap on qty; default: none")
    listing.add_argument(
        "--max-notional", default=None, help="per-order cap on value, quote asset; default: none"
    )

    caps = command(
        "set-order-caps",
        "admin.set_order_caps",
        _order_caps,
        "set both per-order caps (fat-finger filters); a cap left out is removed",
    )
    caps.add_argument("symbol")
    caps.add_argument("--max-qty", default=None, help="most qty per order; default (or 0): no cap")
    caps.add_argument(
        "--max-notional", default=None, help="most value per order; default (or 0): no cap"
    )

    mature = command(
        "mature",
        "admin.mature",
        _mature,
        "mature a T-bill now: cancel its orders, pay par",
        _MATURE_TEXT,
    )
    mature.add_argument("symbol")
    mature.add_argument(
        "--maturity",
        dest="expected_maturity",
        metavar="YYYY-MM-DD",
        type=iso_date,
        default=None,
        help="YYYY-MM-DD, the bill's own maturity: needed before that date",
    )

    status = command(
        "set-status",
        "admin.set_status",
        _set_status,
        "set a market's trading status: open, halted, cancel_only, post_only or delisted",
        _SET_STATUS_TEXT,
    )
    status.add_argument("symbol")
    statuses = [s.value for s in InstrumentStatus]
    status.add_argument("status", choices=statuses, metavar="STATUS", help="one of those above")

    reference = command(
        "set-reference-price", "admin.set_reference_price", _reference, "move the price band"
    )
    reference.add_argument("symbol")
    reference.add_argument(
        "price", help="the band's new centre; a T-bill's per 100 of face, 50-100"
    )

    asset = command("list-asset", "admin.list_asset", _asset, "list an asset")
    asset.add_argument(
        "code", help="e.g. GOOGx; not one that differs from a listed code only by case"
    )
    asset.add_argument("scale", type=int, help="decimals of its smallest unit")

    attest = command("attest-reserves", "admin.attest_reserves", _attest, "record reserves")
    attest.add_argument("asset")
    attest.add_argument("amount")
    attest.add_argument(
        "--as-of",
        type=time_us,
        default=None,
        help="the statement's time: ISO 8601 with its zone (2026-12-06T17:00:00Z; a date alone"
        " 2026-12-06T00:00Z) or µs since the epoch, 16 digits; default now",
    )

    for name, method, text in (
        ("deposit", "admin.deposit", "credit an account (minted against reserves)"),
        ("withdraw", "admin.withdraw", "request a withdrawal (held until confirmed)"),
    ):
        movement = command(name, method, _movement, text)
        movement.add_argument("account", type=int)
        movement.add_argument("asset")
        movement.add_argument("amount")

    for name, method, text in (
        ("confirm-withdrawal", "admin.confirm_withdrawal", "the funds left: burn them"),
        ("void-withdrawal", "admin.void_withdrawal", "the funds stay: release the hold"),
    ):
        withdrawal = command(name, method, _withdrawal, text, _WITHDRAWAL_TEXT.format(text))
        withdrawal.add_argument("withdrawal_id", type=int, metavar="ID")
        withdrawal.add_argument(
            "--account", type=int, help="the account it must be of; else refused, nothing done"
        )
        withdrawal.add_argument("--asset", help="the asset it must be of; likewise")
        withdrawal.add_argument(
            "--amount", help="the amount it must be, e.g. 100.50 (needs --asset); likewise"
        )

    pending = command(
        "withdrawals",
        "admin.withdrawals",
        _withdrawals,
        "list the pending withdrawals, oldest first (a page; the next with --after)",
        read=True,
    )
    pending.add_argument("--account", type=int, help="only this account's")
    pending.add_argument(
        "--after", type=int, default=None, help="only those after this id (the page cursor)"
    )
    pending.add_argument("--limit", type=int, default=None, help="at most this many (1-1000)")

    sweep = command(
        "sweep",
        "admin.sweep",
        _sweep,
        "take the venue's income out: its fee income or rounding to a participant account",
        _SWEEP_TEXT,
    )
    sweep.add_argument("source", choices=sorted(SWEPT_FROM), help="the venue account swept")
    sweep.add_argument("asset")
    sweep.add_argument("amount", help="at the asset's decimals, e.g. 1250.50")
    sweep.add_argument("--to", type=int, required=True, help="the participant account paid")

    account = command("open-account", "admin.open_account", _open_account, "open an account")
    account.add_argument("account", type=int)
    account.add_argument("name")
    account.add_argument("jurisdiction", type=jurisdiction, help="ISO 3166 alpha-2, e.g. DE")
    account.add_argument(
        "--kyc", action=argparse.BooleanOptionalAction, default=False, help="default: --no-kyc"
    )

    dividend = command(
        "dividend", "admin.pay_dividend", _dividend, "pay a cash dividend to every holder"
    )
    dividend.add_argument("symbol", help="the equity; paid in its quote asset")
    dividend.add_argument("amount_per_share", help="cash per whole share, e.g. 0.2475")
    dividend.add_argument("--payer", type=int, required=True, help="the account that pays")

    split = command("split", "admin.split", _split, "split or reverse-split an equity (halt first)")
    split.add_argument("symbol")
    split.add_argument("ratio", help="new:old shares, e.g. 2:1, 3:2 or 1:10")
    split.add_argument(
        "--payer", type=int, help="the account that pays cash in lieu of fractions below the step"
    )

    shown = "issue an API key (its secret shown once, and again to you under its --cl-op-id)"
    key = command("issue-key", "admin.issue_key", _issue_key, shown)
    key.add_argument("account", type=int)
    key.add_argument(
        "--scopes", type=scopes, required=True, help="comma-separated: read,trade,admin"
    )

    revoke = command(
        "revoke-key",
        "admin.revoke_key",
        _revoke_key,
        "revoke an API key issued by issue-key: refused from now on, its connections closed",
        "revoke an API key issued by issue-key: refused from now on (logons and REST), its\n"
        "live connections closed (4004). A key of venue.toml's [[api_keys]] is refused: remove\n"
        "it there and restart. On a cluster every gateway applies it (upgrade them all first).",
    )
    revoke.add_argument("--api-key", required=True, help="the key to revoke (not its secret)")


def cl_op_id(text: str) -> str:
    """A `--cl-op-id`: 1 to `CL_OP_ID_LENGTH_MAX` characters, refused as the flags are read
    (the venue refused it too, in msgspec's words, once connected and logged on)."""
    if not 1 <= len(text) <= CL_OP_ID_LENGTH_MAX:
        raise argparse.ArgumentTypeError(
            f"{text!r} has {len(text)} characters: give 1 to {CL_OP_ID_LENGTH_MAX}"
        )
    return text


def jurisdiction(text: str) -> str:
    """An ISO 3166 alpha-2 code as the venue takes it, two capital letters; one in lowercase
    is refused with the code it may mean (the venue's refusal was its regular expression)."""
    if len(text) == 2 and text.isascii() and text.isalpha() and text.isupper():
        return text
    if len(text) == 2 and text.isascii() and text.isalpha():
        hint = f"did you mean {text.upper()}?"
    else:
        hint = "e.g. DE"
    raise argparse.ArgumentTypeError(
        f"{text!r} is no ISO 3166 alpha-2 code (two capital letters): {hint}"
    )


def scopes(text: str) -> str:
    """`--scopes`: one or more of `SCOPES`, comma-separated; another word is refused naming
    them (the venue's refusal was msgspec's `Invalid enum value`), a wrong case with the one
    it may mean."""
    given = _list_of(text)
    if not given:
        raise argparse.ArgumentTypeError(f"no scope given: one or more of {','.join(SCOPES)}")
    for scope in given:
        if scope not in SCOPES:
            meant = f": did you mean {scope.lower()}?" if scope.lower() in SCOPES else ""
            raise argparse.ArgumentTypeError(
                f"{scope!r} is no scope (they are {', '.join(SCOPES)}){meant}"
            )
    return text


def refuse_unsendable(method: str, params: dict[str, Any], api_key: str, secret: str) -> None:
    """Refuse, before connecting, a request the venue could not read: an argument, a key or a
    secret that is not UTF-8 (bytes a shell or the environment passed as they came: the
    encoding raised, a traceback) or a request past the venue's `MESSAGE_BYTES_MAX`, which
    it answers MESSAGE_TOO_BIG with no id, so the command waited for an answer it would never
    get, 35 s and three resends (session 32's sweep). The request is measured as the SDK
    encodes it (raw UTF-8, no spaces), with the protocol's widest id: never short, at most
    15 bytes over."""
    if not _is_utf8(api_key):
        shown = api_key.encode("utf-8", "surrogateescape")[:40]
        raise CommandFailed(
            f"--key (or ${KEY_ENV}) {shown!r}: not UTF-8 text, which is all the venue reads;"
            " nothing sent"
        )
    if not _is_utf8(secret):  # its bytes are not shown: a secret stays off the terminal
        raise CommandFailed(
            f"--secret (or ${SECRET_ENV}): not UTF-8 text, which is all the venue reads;"
            " nothing sent"
        )
    for name, value in params.items():
        if isinstance(value, str) and not _is_utf8(value):
            shown = value.encode("utf-8", "surrogateescape")[:40]
            raise CommandFailed(
                f"{name} {shown!r}: not UTF-8 text, which is all the venue reads; nothing sent"
            )
    size = len(msgspec.json.encode({"id": INT_MAX, "method": method, "params": params}))
    if size > MESSAGE_BYTES_MAX:
        name, value = max(params.items(), key=lambda item: len(str(item[1])))
        raise CommandFailed(
            f"{name}: {len(str(value)):,} characters make a request of {size:,} bytes, past"
            f" the venue's {MESSAGE_BYTES_MAX:,} for one message; nothing sent"
        )


def _is_utf8(text: str) -> bool:
    """Whether `text` encodes as UTF-8: arguments that were not decode to lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def jurisdictions(text: str) -> str:
    """`--excluded-jurisdictions`: codes as `jurisdiction` takes each, comma-separated."""
    for code in _list_of(text):
        jurisdiction(code)
    return text


def run(args: argparse.Namespace) -> int:
    """Send the command's request; print the result as JSON. The exit status is documented."""
    where = ""  # whence the URL, when the operator did not give it
    if args.url is None:
        args.url = config_trade_url(args.config)
        where = f" (no --url: {args.config}'s [venue] host and port)"
    check_trade_url(args.url)
    try:
        api_key, secret = credentials(args)
    except ValueError as problem:
        print(f"venue admin: {problem}", file=sys.stderr)
        return EXIT_NO_ANSWER
    params = args.admin_params(args)
    cl_op_id = None
    if not args.admin_read:
        cl_op_id = new_cl_op_id() if args.cl_op_id is None else args.cl_op_id
        params["cl_op_id"] = cl_op_id
    refuse_unsendable(args.admin_method, params, api_key, secret)
    sent: list[bool] = []
    try:
        expected = getattr(args, "expected_maturity", None)
        asked = command(args.url, api_key, secret, args.admin_method, params, sent, expected)
        result = asyncio.run(asked)
    except NotSent as error:
        print(f"venue admin: not sent: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except VenueError as error:
        detail = f" {json.dumps(error.data)}" if error.data is not None else ""
        notes = "".join(f"; {note}" for note in getattr(error, "__notes__", ()))
        said = with_utc_times(f"{error}{detail}{notes}")
        print(f"venue admin: refused: {said}", file=sys.stderr)
        return EXIT_REFUSED
    except NO_ANSWER as error:
        maybe = ""
        if sent and cl_op_id is not None and NEW_ID_ADVICE not in str(error):
            maybe = SENT_NO_ANSWER.format(cl_op_id=cl_op_id, flags=_again(args, params))
            if isinstance(error, ConnectionRefusedError):
                maybe += NOT_LISTENING_YET
        said = with_utc_times(f"{_why(error)}{maybe}")
        print(f"venue admin: no answer from {args.url}{where}: {said}", file=sys.stderr)
        return EXIT_NO_ANSWER
    if args.admin_method == "admin.attest_reserves":
        say_if_stale(args.config, params)
    print(json.dumps(result, indent=2, sort_keys=True))
    return EXIT_OK


class OutcomeUnknown(Exception):
    """A cluster gateway's 504 OUTCOME_UNKNOWN: it sent the command to the core and had no
    outcome back in time (a takeover running long, no core active). The command may yet be
    done: no answer, not a refusal (exit 1 says nothing was done)."""


NO_ANSWER = (
    OSError,
    ConnectionClosed,
    InvalidHandshake,
    InvalidURI,
    TimeoutError,
    OutcomeUnknown,
)


def _again(args: argparse.Namespace, params: dict[str, Any]) -> str:
    """The flags that send the same command again: its id, and the time an attestation
    took by default (now, which a second invocation would take anew: other params)."""
    flags = f"--cl-op-id {params['cl_op_id']}"
    if args.admin_method == "admin.attest_reserves" and args.as_of is None:
        flags += f" --as-of {params['as_of']}"
    return flags


# A time the venue's messages give in µs since the epoch: 16 digits (2001 to 2286) said in µs
# (`as of 1796603461466083 µs`) or after "at ", "as of " or "as_of " (`issued under it at
# 1796603860181032`, `reserves as of 1796603461466083 are recorded as`, `as_of
# 1796603461466083 is in the future`), so that no amount or id is read as one.
MICROSECONDS = re.compile(
    r"(?<![\d.])\d{16} µs(?![\w])|(?:(?<=\bat )|(?<=\bas of )|(?<=\bas_of ))\d{16}(?![\d.])"
)


def with_utc_times(text: str) -> str:
    """`text` with each µs time followed by its UTC reading (`1796603461466083 µs
    (2026-12-07T00:31:01.466083Z)`): an operator compares the times of a refusal (an
    attestation older than the latest) with a statement's, not with µs (until session 28,
    µs alone)."""

    def reading(match: re.Match[str]) -> str:
        moment = EPOCH + datetime.timedelta(microseconds=int(match.group(0).split()[0]))
        return f"{match.group(0)} ({moment.isoformat().replace('+00:00', 'Z')})"

    return MICROSECONDS.sub(reading, text)


def new_cl_op_id() -> str:
    """A client operation id no other invocation gives (96 random bits)."""
    return CL_OP_ID_PREFIX + secrets.token_hex(12)


async def command(
    url: str,
    api_key: str,
    secret: str,
    method: str,
    params: dict[str, Any],
    sent: list[bool],
    expected_maturity: str | None = None,
) -> Any:
    """`send`, then, once it has an answer or a refusal, the reads that go with it: the names
    like an unknown one to a refusal (`suggest_names`), a maturity's reserves
    (`reserves_due`). After `send`, not inside it: a follow-up with no answer there turned a
    refusal into `no answer` and sent a `mature` already done again."""
    venue = Reader(url, api_key, secret)
    if method == "admin.mature":  # before its date, only the bill named by its date
        await confirm_maturity(venue, params["symbol"], expected_maturity)
    try:
        result = await send(url, api_key, secret, method, params, sent)
    except VenueError as error:
        await suggest_names(venue, error, params)
        raise
    if method == "admin.mature":
        result |= await reserves_due(venue, params["symbol"])
    elif method == "admin.attest_reserves":
        result |= await reserves_attested(venue, params["asset"])
    return result


async def send(
    url: str, api_key: str, secret: str, method: str, params: dict[str, Any], sent: list[bool]
) -> Any:
    """`call`, sent again after each of `RETRY_PAUSES_S` while no answer comes once it was
    sent (`sent` non-empty) and the params carry a `cl_op_id` (the venue does it at most
    once). Never sent at all (the venue is not there): no second try."""
    for pause_s in RETRY_PAUSES_S:
        try:
            return await call(url, api_key, secret, method, params, sent)
        except NO_ANSWER as error:
            if not sent or "cl_op_id" not in params:
                raise
            said = RESENDING.format(url=url, why=_why(error), cl_op_id=params["cl_op_id"])
            print(said, file=sys.stderr)
        await asyncio.sleep(pause_s)
    return await call(url, api_key, secret, method, params, sent)


async def call(
    url: str,
    api_key: str,
    secret: str,
    method: str,
    params: dict[str, Any],
    sent: list[bool] | None = None,
) -> Any:
    """Connect, log on, send one request and return its result (or raise `VenueError`;
    `OutcomeUnknown` for a 504 OUTCOME_UNKNOWN); `sent` gets True once the request is on its
    way (logged on). Connecting and logging on get `CONNECT_TIMEOUT_S`, the answer
    `ANSWER_WAIT_S`."""
    connecting = f"no connection and logon within {CONNECT_TIMEOUT_S:g} s"
    waiting = WAITING.format(url=url, what="connect and log on", seconds=CONNECT_TIMEOUT_S)
    async with _within(CONNECT_TIMEOUT_S, connecting, waiting):
        client = await VenueClient(url).connect()
    try:
        async with _within(CONNECT_TIMEOUT_S, connecting, waiting):
            await client.logon(api_key, secret)
            withdrawal = await pending_withdrawal(client, method, params)
        if sent is not None:
            sent.append(True)
        answering = WAITING.format(url=url, what="answer", seconds=ANSWER_WAIT_S)
        async with _within(ANSWER_WAIT_S, f"no answer within {ANSWER_WAIT_S:g} s", answering):
            try:  # the SDK's own timeout (30 s) is shorter: this one is in force
                result = await client.request(method, params, timeout_s=ANSWER_WAIT_S)
            except VenueError as error:
                if error.name == "OUTCOME_UNKNOWN":
                    raise OutcomeUnknown(str(error)) from None
                raise
        return result if withdrawal is None else result | {"withdrawal": withdrawal}
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def _within(seconds: float, said: str, waiting: str = "") -> AsyncIterator[None]:
    """`asyncio.timeout(seconds)`, its TimeoutError saying `said` (which wait ran out);
    `waiting`, if given, is said on stderr once the wait passes `WAIT_NOTE_S`."""
    note = asyncio.get_running_loop().call_later(
        WAIT_NOTE_S, lambda: print(waiting, file=sys.stderr) if waiting else None
    )
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise TimeoutError(said) from None
    finally:
        note.cancel()


async def pending_withdrawal(
    client: VenueClient, method: str, params: dict[str, Any]
) -> dict[str, Any] | None:
    """The pending withdrawal a confirm or void names, as the venue lists it just before it
    is sent (to show what was acted on); None for other commands, or when none is pending
    under that id (the refusal, or a repeat's answer, says why)."""
    if method not in WITHDRAWAL_METHODS or params["withdrawal_id"] < 1:
        return None
    withdrawal_id = params["withdrawal_id"]
    page = {"after_withdrawal_id": withdrawal_id - 1, "limit": 1}
    try:
        listed = await client.request("admin.withdrawals", page)
    except VenueError:  # a venue of before the read: the answer alone
        return None
    found: list[dict[str, Any]] = listed["withdrawals"]
    return found[0] if found and found[0]["withdrawal_id"] == withdrawal_id else None


class Reader:
    """The public reads that follow a command (`command`), each on a connection of its own
    logged on with the admin's key, within `FOLLOW_UP_WAIT_S`."""

    def __init__(self, url: str, api_key: str, secret: str) -> None:
        self.url, self.api_key, self.secret = url, api_key, secret

    async def read(self, *methods: str) -> list[Any]:
        """The answers to `methods` (each with no params), in order."""
        async with _within(FOLLOW_UP_WAIT_S, f"no answer within {FOLLOW_UP_WAIT_S:g} s"):
            client = await VenueClient(self.url).connect()
            try:
                await client.logon(self.api_key, self.secret)
                return [await client.request(method, {}) for method in methods]
            finally:
                await client.close()


# What a follow-up read may raise and be left out for: a venue of before that read, a link
# that dropped, no answer in time. The command's answer (or refusal) stands as it came.
FOLLOW_UP_FAILED = (VenueError, *NO_ANSWER)


async def suggest_names(venue: Reader, error: VenueError, params: dict[str, Any]) -> None:
    """To an UNKNOWN_SYMBOL or UNKNOWN_ASSET refusal, a note naming what the venue lists
    that the operator may have meant (`aapl` -> AAPLx, `aaplx-usd` -> AAPLx-USD), or, for an
    asset it has nothing like, how to list one. Names match exactly, case and all, so a
    near miss was refused with no hint at all."""
    if error.name not in ("UNKNOWN_SYMBOL", "UNKNOWN_ASSET"):
        return
    if "did you mean" in str(error):  # the venue named the listed one itself (since session 28)
        return
    fields: tuple[str, ...]
    try:
        if error.name == "UNKNOWN_SYMBOL":
            [listed] = await venue.read("instruments")
            known = [row["symbol"] for row in listed["instruments"]]
            fields = ("symbol",)
        else:
            [listed] = await venue.read("reserves")
            known = [row["asset"] for row in listed["reserves"]]
            fields = ("asset", "base", "quote")
    except FOLLOW_UP_FAILED:  # the refusal alone
        return
    for field in fields:
        name = params.get(field)
        if isinstance(name, str) and name not in known:
            error.add_note(_suggestion(name, known, error.name == "UNKNOWN_ASSET"))
            return


def _suggestion(name: str, known: list[str], asset: bool) -> str:
    """`did you mean X?` for the listed names like `name`, by the venue's one rule for a
    symbol (`case_twin`, then `likely_symbols`: the same letters and digits, one typo, a
    prefix); else where the listed ones are, or, for an asset, how to list it. Before
    session 36's review, difflib's close spellings too, which named another bill for a
    bill's date two digits off (`TB-2027-05-06-USD`), or three other stocks for `TSLAx-USD`."""
    twin = case_twin(name, known)
    alike = [twin] if twin is not None else likely_symbols(name, known)
    if alike:
        return f"did you mean {' or '.join(alike)}? (names match exactly, case and all)"
    if asset:
        return f"no asset is like it: list one with `venue admin list-asset {name} SCALE`"
    return "no market is like it: `venue admin list-instrument` lists one"


async def reserves_due(venue: Reader, symbol: str) -> dict[str, Any]:
    """After a bill's maturity: its cash asset's reserves as the venue lists them now, under
    `"reserves_due"`, with a line on stderr when they no longer cover the supply
    (`"covered"`). The maturity minted the par it paid (backed by the par the custodian
    receives from the Treasury, docs/settlement.md "T-bills"), so the cash's supply may have
    grown past what was attested, and then deposits of it are refused until the operator
    attests its reserves again. Empty if the venue does not list them."""
    try:
        listed, reserves = await venue.read("instruments", "reserves")
    except FOLLOW_UP_FAILED:  # the answer alone
        return {}
    quotes = [i["quote"] for i in listed["instruments"] if i["symbol"] == symbol]
    rows = [row for row in reserves["reserves"] if quotes and row["asset"] == quotes[0]]
    if not rows:
        return {}
    row = rows[0]
    if not row["covered"]:
        print(RESERVES_DUE.format(**row), file=sys.stderr)
    return {"reserves_due": row}


async def reserves_attested(venue: Reader, asset: str) -> dict[str, Any]:
    """After an attestation: the asset's reserves as the venue lists them now, under
    `"reserves"`, with a line on stderr when the statement leaves the supply uncovered (a
    custodian's shortfall, or a mistyped amount): deposits of the asset are then refused
    until the supply is within an attestation again (a statement that covers it, or burns:
    confirmed withdrawals, a split's floors). Empty if the venue does not list
    them."""
    try:
        (reserves,) = await venue.read("reserves")
    except FOLLOW_UP_FAILED:  # the answer alone
        return {}
    rows = [row for row in reserves["reserves"] if row["asset"] == asset]
    if not rows:
        return {}
    if not rows[0]["covered"]:
        print(RESERVES_SHORT.format(**rows[0]), file=sys.stderr)
    return {"reserves": rows[0]}


def say_if_stale(config_path: Path, params: dict[str, Any]) -> None:
    """After a statement is taken: a line on stderr when its `as_of` (`--as-of`) is already
    older than the reserve staleness of the config beside the CLI (the bound the venue
    started with), under which deposits of the asset are refused `RESERVES_STALE`. Nothing
    when there is no config to read (before session 31's review, nothing ever: the
    statement was taken, and the first deposit after it refused)."""
    try:
        bound_us = venue_config.reserve_staleness_max_us(venue_config.load(config_path))
    except venue_config.ConfigError:
        return
    age_us = time.time_ns() // 1_000 - int(params["as_of"])
    if age_us <= bound_us:
        return
    note = RESERVES_STALE_NOTE.format(
        as_of=params["as_of"],
        age=f"{age_us / HOUR_US:.1f}",
        bound=f"{bound_us / HOUR_US:g}",
        config=config_path,
        asset=params["asset"],
    )
    print(with_utc_times(note), file=sys.stderr)


def credentials(args: argparse.Namespace) -> tuple[str, str]:
    """The admin key and secret: flags, else the environment, else the config's admin key."""
    api_key = args.key or os.environ.get(KEY_ENV)
    secret = args.secret or os.environ.get(SECRET_ENV)
    if api_key and secret:
        return api_key, secret
    try:
        config = venue_config.load(args.config)
    except venue_config.ConfigError as error:
        raise ValueError(
            f"give --key and --secret (or ${KEY_ENV}, ${SECRET_ENV}): {error}"
        ) from None
    for entry in config.api_keys:
        if "admin" in entry.scopes and (api_key is None or entry.key == api_key):
            return entry.key, secret or entry.secret
    if api_key is not None:  # the config has admin keys, perhaps, but not this one
        raise ValueError(
            f"{api_key} is no admin key of {args.config}: give its secret too"
            f" (--secret or ${SECRET_ENV})"
        )
    raise ValueError(f"no admin key in {args.config}: give --key and --secret")


def _why(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is `venue serve` running there?)"
    if isinstance(error, ConnectionLost):  # what to do is said after it, with the flags
        return error.reason
    if isinstance(error, InvalidHandshake):  # a server there, but no venue's websocket
        return f"{error} (is it a venue? `venue serve` prints its trade URL)"
    return str(error) or type(error).__name__


# What each status allows, as the engine applies it (docs/protocol.md §9.2), and what the
# refusals of a change mean (§10).
_SET_STATUS_TEXT = """\
set a market's trading status (STATUS):

  open         orders, amends and cancels
  halted       no new orders or amends (INSTRUMENT_HALTED); cancels
               allowed, resting orders stay: a pause
  cancel_only  only cancels (CANCEL_ONLY)
  post_only    only post-only orders, and amends may not cross (POST_ONLY_MODE)
  delisted     final: every open order is canceled; no status can be set again

A refusal exits 1 and changes nothing: UNKNOWN_SYMBOL (not listed),
INSTRUMENT_DELISTED (delisted before, which is final), INSTRUMENT_MATURED (a
matured T-bill never trades again: only halted, cancel_only or delisted)."""

# A confirm or a void is final; a mistyped ID names another account's withdrawal.
_WITHDRAWAL_TEXT = """\
{}.

Give what you expect the withdrawal ID to be (--account, and --asset and
--amount at the asset's decimals): one that is not so is refused (BAD_PARAM,
exit 1), its message saying whose and how much it is, and nothing is done.
`venue admin withdrawals` lists those pending. The withdrawal acted on is
printed beside the answer ("withdrawal")."""

# The venue's accounts a sweep takes from, by the name the operator types.
# The venue accounts a sweep may take from, as the CLI spells them ("fee-income").
SWEPT_FROM = {name.replace(" ", "-"): account for account, name in SWEPT_ACCOUNTS.items()}

_SWEEP_TEXT = """\
take the venue's income out: move AMOUNT of ASSET from its fee income
account (-2: the trades' fees) or its rounding account (-3: the residuals
of rounding) to the participant account --to, in one transfer (kind
"sweep") that the ledger store keeps as every other one.

Refused, nothing moved (exit 1): more than the account holds
(INSUFFICIENT_BALANCE, saying what it holds), an unknown --to account
(UNKNOWN_ACCOUNT) or asset (UNKNOWN_ASSET), an amount of 0 (BAD_PARAM).
The answer gives the transfer's id ("transfer_id")."""

# ----------------------------------------------------------------- params of each command

_INSTRUMENT_TEXT_FLAGS = (
    ("--symbol", "e.g. GOLDx-USD"),
    ("--base", "the asset traded"),
    ("--quote", "the asset it is paid in"),
    ("--tick", "price increment; its decimals are the price decimals"),
    ("--step", "quantity increment"),
    ("--min-qty", "smallest order quantity"),
    ("--min-notional", "smallest order value, in the quote asset"),
    ("--band-pct", "how far from the reference price orders may be, in percent"),
    ("--reference-price", "the price the band is centered on"),
)


def _instrument(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {
        "symbol": args.symbol,
        "kind": args.kind,
        "base": args.base,
        "quote": args.quote,
        "tick": args.tick,
        "step": args.step,
        "min_qty": args.min_qty,
        "min_notional": args.min_notional,
        "band_pct": args.band_pct,
        "reference_price": args.reference_price,
        "maker_fee_bps": args.maker_fee_bps,
        "taker_fee_bps": args.taker_fee_bps,
        "excluded_jurisdictions": _list_of(args.excluded_jurisdictions),
    }
    if args.maturity is not None:
        params["maturity"] = args.maturity
    return params | _caps_of(args)


def _caps_of(args: argparse.Namespace) -> dict[str, Any]:
    caps = {"max_qty": args.max_qty, "max_notional": args.max_notional}
    return {name: value for name, value in caps.items() if value is not None}


def _order_caps(args: argparse.Namespace) -> dict[str, Any]:
    return {"symbol": args.symbol} | _caps_of(args)


def _mature(args: argparse.Namespace) -> dict[str, Any]:
    """The venue checks `--maturity` too (`maturity`, since session 36): the check read
    before sending is the CLI's, this one holds whoever sends the command."""
    if args.expected_maturity is None:
        return {"symbol": args.symbol}
    return {"symbol": args.symbol, "maturity": args.expected_maturity}


_MATURE_TEXT = """mature a T-bill now: cancel its orders, pay par.

Before the bill's maturity date, maturing it pays its holders par early, which cannot be
undone: give that date with --maturity (the UTC date of the µs `instruments` lists as the
bill's maturity), else nothing is sent (exit 1, the line saying the bill's date). On or
after the date, --maturity is not needed (if given, it must be the bill's; the venue checks
it too). The bill's cash asset's reserves are printed beside the answer ("reserves_due")."""


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def iso_date(text: str) -> str:
    """`--maturity`: a date as YYYY-MM-DD (a real one: not 2027-06-31), returned as given.
    The form is matched first: Python 3.11's `fromisoformat` also takes `2027060312`,
    `20270603xx` or a week date, `2027-W22-4`, as a date."""
    try:
        if _ISO_DATE.fullmatch(text):
            return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r}: a date as YYYY-MM-DD, such as 2027-03-04")


class NotSent(Exception):
    """A command the CLI did not send, its message saying why (nothing changed)."""


async def confirm_maturity(venue: "Reader", symbol: str, expected: str | None) -> None:
    """Raise `NotSent` for a maturity of `symbol` before its date without that date as
    `expected` (`--maturity`), or with another date: maturing early pays par at once, for
    good, and a symbol one digit off names another bill. A bill's maturity never changes
    once listed, so the check read before the command holds when it runs. A symbol that
    is not a listed bill is sent: the venue refuses it in its own words."""
    [listed] = await venue.read("instruments")
    rows = [row for row in listed["instruments"] if row["symbol"] == symbol]
    if not rows or not rows[0].get("maturity"):
        return
    maturity = (EPOCH + datetime.timedelta(microseconds=rows[0]["maturity"])).date()
    if expected is not None and expected != maturity.isoformat():
        raise NotSent(
            f"{symbol} matures {maturity}, not {expected} (--maturity): is it the bill you"
            f" mean? (its own date: --maturity {maturity}); nothing sent"
        )
    days = (maturity - datetime.datetime.now(datetime.UTC).date()).days
    if expected is None and days > 0:
        raise NotSent(
            f"{symbol} matures {maturity}, in {days} days: maturing it now pays its holders"
            f" par early, which cannot be undone; to do so, give --maturity {maturity};"
            " nothing sent"
        )


def _set_status(args: argparse.Namespace) -> dict[str, Any]:
    return {"symbol": args.symbol, "status": args.status}


def _reference(args: argparse.Namespace) -> dict[str, Any]:
    return {"symbol": args.symbol, "price": args.price}


def _asset(args: argparse.Namespace) -> dict[str, Any]:
    return {"code": args.code, "scale": args.scale}


def _attest(args: argparse.Namespace) -> dict[str, Any]:
    as_of = time.time_ns() // 1_000 if args.as_of is None else args.as_of
    return {"asset": args.asset, "amount": args.amount, "as_of": as_of}


def _movement(args: argparse.Namespace) -> dict[str, Any]:
    return {"account": args.account, "asset": args.asset, "amount": args.amount}


def _withdrawal(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"withdrawal_id": args.withdrawal_id}
    expected = {"account": args.account, "asset": args.asset, "amount": args.amount}
    return params | {name: value for name, value in expected.items() if value is not None}


def _withdrawals(args: argparse.Namespace) -> dict[str, Any]:
    params = {"account": args.account, "after_withdrawal_id": args.after, "limit": args.limit}
    return {name: value for name, value in params.items() if value is not None}


def _sweep(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "venue_account": SWEPT_FROM[args.source],
        "asset": args.asset,
        "amount": args.amount,
        "account": args.to,
    }


def _open_account(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "account": args.account,
        "name": args.name,
        "jurisdiction": args.jurisdiction,
        "kyc_approved": args.kyc,
    }


def _dividend(args: argparse.Namespace) -> dict[str, Any]:
    return {"symbol": args.symbol, "payer": args.payer, "amount_per_share": args.amount_per_share}


def _split(args: argparse.Namespace) -> dict[str, Any]:
    params = {"symbol": args.symbol, "ratio": args.ratio}
    if args.payer is not None:
        params["payer"] = args.payer
    return params


def _issue_key(args: argparse.Namespace) -> dict[str, Any]:
    return {"account": args.account, "scopes": _list_of(args.scopes)}


def _revoke_key(args: argparse.Namespace) -> dict[str, Any]:
    return {"api_key": args.api_key}


def _list_of(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]
