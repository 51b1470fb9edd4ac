"""`venue.toml`: the venue's configuration, decoded strictly and turned into setup commands.

Owns the file's schema (unknown keys are errors, amounts are decimal strings converted
exactly at each asset's scale) and its translation into the engine commands that build the
venue from nothing: assets, instruments, reserves, accounts and their deposits. API keys
are handed to the gateway's authentication, never to the engine.
"""

import datetime
import ipaddress
import os
import select
import stat
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Annotated, Any

import msgspec

from engine.commands import (
    AttestReserves,
    Command,
    Deposit,
    ListAsset,
    ListInstrument,
    OpenAccount,
)
from engine.enums import InstrumentKind
from engine.events import CommandRejected
from engine.instrument import (
    BAND_BPS_MAX,
    FEE_BPS_MAX,
    InstrumentSpec,
    bill_price_problem,
    case_twin,
    is_name,
    listed_band_low,
    notional_cap_problem,
)
from engine.reasons import ErrorCode
from engine.units import parse_units
from engine.venue import Venue
from engine.venue import VenueConfig as EngineConfig
from settlement import jurisdictions, tbill
from settlement.jurisdictions import is_jurisdiction
from settlement.ledger import Ledger

HOUR_US = 3_600_000_000
# What an API key may be allowed (`gateway.auth` checks each request against them).
SCOPES = frozenset({"read", "trade", "admin"})
# The protocol's integers (gateway.wire.INT_MAX): no client could name a larger account, and
# past 2^64 the journal cannot even hold it (the build stopped on an OverflowError).
ACCOUNT_ID_MAX = 2**53 - 1
OUTCOME_WAIT_MS_DEFAULT = 20_000  # `[venue] outcome_wait_ms`: core.nats_bus says why


# A segment of at least 64 KiB: a busy venue's group commit is ~134 KB (~1,000 commands), and
# a smaller segment would only make a file every batch or two, each a rename and fsyncs.
JOURNAL_SEGMENT_BYTES_MIN = 64 << 10
# At most 4 GiB: a start reads the open segment whole (its scan), ~1 s a GiB on a plain disk,
# and the archive copies each finished one in one go; a larger one holds more disk unarchived.
JOURNAL_SEGMENT_BYTES_MAX = 4 << 30
JournalSegmentBytes = Annotated[
    int, msgspec.Meta(ge=JOURNAL_SEGMENT_BYTES_MIN, le=JOURNAL_SEGMENT_BYTES_MAX)
]


class VenueSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Annotated[str, msgspec.Meta(min_length=1)] = "data"  # "" would be the cwd
    # at least 1: with 0 a build's deposits pass their rehearsal (attested that microsecond)
    # and are refused a moment later, the journal half written; at most 1,000,000 (114
    # years), which keeps the staleness in µs within the 64 bits a snapshot holds
    reserve_staleness_hours: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 26
    ledger_postgres: str = ""  # a PostgreSQL DSN: the ledger store there; empty: SQLite file
    nats: str = ""  # NATS URL(s): the journal is a JetStream stream there; "": the file
    # when commands queued up behind the last journal commit (a busy venue), the next starts
    # no sooner than this after the previous one started (0: off); at most
    # core.sequencer.COMMIT_INTERVAL_S_MAX
    commit_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    # the file journal's commit runs on the event loop, which waits for the write (cheaper
    # than a thread's hand-off on a disk that writes in ~0.1 ms); false: on a thread of its
    # own, for a disk so slow that the loop should not wait for it. Over NATS: a thread.
    commit_on_loop: bool = True
    # public market data goes out at most once per this interval: what changes within it is
    # coalesced into one update per stream (0: after every released batch, as far as the
    # fan-out's own pacing allows). A quiet venue's change still goes out at once.
    market_data_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=1_000)] = 5
    # a cluster gateway answers 504 OUTCOME_UNKNOWN a request whose command has been owed this
    # long (core.nats_bus `OUTCOME_WAIT_S`, the default: why 20 s); over a held requote's 5 s
    # (gateway.limits.QUOTE_PLACE_WAIT_S), which is refused first, and under the SDK's 30 s
    # request timeout, so the client reads this answer, not its own timeout
    outcome_wait_ms: Annotated[int, msgspec.Meta(ge=6_000, le=29_000)] = OUTCOME_WAIT_MS_DEFAULT
    # where the venue moves the file journal's finished segments a restart no longer needs,
    # by itself after each periodic snapshot (core.archive_runs); "": never (an operator's
    # `venue journal archive` from cron, or the disk fills)
    journal_archive_dir: str = ""
    # the file journal's segment size (core.journal.SEGMENT_BYTES when absent, 1 GiB), within
    # `JOURNAL_SEGMENT_BYTES_MIN` and `JOURNAL_SEGMENT_BYTES_MAX`
    journal_segment_bytes: JournalSegmentBytes | None = None


# A rate or burst of 0 or less would let no request through (a bucket that never refills
# or holds nothing): refused at load, not by every connection's first frame.
PositiveLimit = Annotated[int, msgspec.Meta(ge=1)]
# A bucket must hold the dearest valid request, a quote.mass of 100 quotes at a token each
# (gateway.limits.REQUEST_COST_MILLI_MAX): a smaller burst would refuse it forever, and the
# gateway's rate limiter refuses to start with one.
BURST_MIN = 100
BurstLimit = Annotated[int, msgspec.Meta(ge=BURST_MIN)]


class LimitsSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Request rates, in requests per second (a place costs 1, a cancel 0.25), and the caps
    on open connections."""

    connection_rate_per_s: PositiveLimit = 200
    connection_burst: BurstLimit = 400
    account_rate_per_s: PositiveLimit = 500
    account_burst: BurstLimit = 1_000
    # open connections per client IP and in total (gateway.limits: why these numbers)
    connections_per_ip_max: PositiveLimit = 256
    connections_max: PositiveLimit = 10_000
    # the share of `connections_max` public connections (/ws/public, the web page, unsigned
    # REST) may not use: kept for trading sessions (gateway.limits: why this number)
    connections_reserved_pct: Annotated[int, msgspec.Meta(ge=0, le=90)] = 10
    # connections per client IP that may wait in that share before they are a trading
    # session's (a /ws/trade one until it logs on, any until its first request says what it
    # is); past it, a public place or a refusal (gateway.limits: why this number)
    pending_per_ip_max: Annotated[int, msgspec.Meta(ge=1, le=1_000)] = 8
    # REST's unsigned requests (public reads) per client IP, all its connections together;
    # its burst is twice this (gateway.limits: why this number)
    unsigned_rate_per_ip_per_s: PositiveLimit = 1_000
    # reverse proxies (IPs, CIDRs) whose `X-Forwarded-For` names the client: for the limits
    # read per request and the logs, never for the connection caps (per TCP peer, at accept)
    trusted_proxies: tuple[str, ...] = ()


CORS_ORIGINS_MAX = 100  # the web apps of one venue's operators and partners, with room to spare
ORIGIN_SCHEMES = {"http": 80, "https": 443}  # a web page's origin, with its scheme's default port


class GatewaySection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The HTTP side of every gateway (the websocket's limits are `[limits]`), and how it
    sends a requote."""

    # the web origins (`https://app.example.com`) whose pages may call the REST API from a
    # browser (CORS, gateway.cors); none: only pages the venue serves itself, as before
    cors_origins: Annotated[tuple[str, ...], msgspec.Meta(max_length=CORS_ORIGINS_MAX)] = ()
    # a plain requote sent as one `AmendPair` command (since session 31); false: as its two
    # amends, as before, for a rolling upgrade while a core of an earlier build may be active
    # (one cannot read an `AmendPair`: docs/cluster.md "Upgrading")
    requote_pairs: bool = True


class AssetEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    code: str
    scale: int


class InstrumentEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    symbol: str
    kind: InstrumentKind
    base: str
    quote: str
    tick: str
    step: str
    min_qty: str
    min_notional: str
    band_pct: str
    reference_price: str
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0
    maturity: datetime.date | None = None
    excluded_jurisdictions: tuple[str, ...] = ()
    max_qty: str | None = None  # per-order cap (fat-finger filter), base asset; absent: none
    max_notional: str | None = None  # per-order cap, quote asset; absent: none


class ReserveEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    asset: str
    amount: str


class AccountEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: int
    name: str
    jurisdiction: str
    kyc_approved: bool
    deposits: dict[str, str] = {}


class ApiKeyEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    key: str
    secret: str
    account: int
    scopes: tuple[str, ...]


class VenueConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    venue: VenueSection = VenueSection()
    limits: LimitsSection = LimitsSection()
    gateway: GatewaySection = GatewaySection()
    assets: tuple[AssetEntry, ...] = ()
    instruments: tuple[InstrumentEntry, ...] = ()
    reserves: tuple[ReserveEntry, ...] = ()
    accounts: tuple[AccountEntry, ...] = ()
    api_keys: tuple[ApiKeyEntry, ...] = ()


class ConfigError(ValueError):
    """The configuration cannot be used; the message says where and why."""


# The sample venue.toml is ~5 KB and a thousand instruments take ~300 KB: a file past this is
# not a config (a log, a disk image given by mistake), and is refused before it is read whole.
CONFIG_BYTES_MAX = 16 * 1024 * 1024
# A config read from a pipe (`--config <(sops -d venue.toml)`) waits this long for its writer
# to finish: a decrypting or templating command takes a second or two, not a minute.
CONFIG_PIPE_WAIT_S = 30.0
PIPE_READ_BYTES = 64 * 1024  # a Linux pipe's buffer: one read takes what it holds
GIVE_CONFIG = (
    "give the venue's TOML file with --config (the sample venue.toml: the repository's root)"
)


def load(path: Path) -> VenueConfig:
    """The config at `path`, decoded and checked (`problem`): ConfigError naming the file."""
    try:
        config = msgspec.toml.decode(_read(path), type=VenueConfig)
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: {error.strerror}: {GIVE_CONFIG}") from None
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ConfigError(f"{path}: {error}") from None
    found = problem(config)
    if found is not None:
        raise ConfigError(f"{path}: {found}")
    return config


# What each pipe given as a config held, by the pipe (its device and inode: a `/dev/fd/N`
# name is reused by the next pipe on that descriptor): a pipe is read once, and a command that
# loads its config twice (`venue admin`: the URL, then the key; the bots; the demo) found it
# empty the second time ("a pipe with no writer", session 32's whole-diff review)
_PIPES_READ: dict[tuple[int, int], bytes] = {}


def _read(path: Path) -> bytes:
    """The bytes of the file or pipe at `path`, at most `CONFIG_BYTES_MAX`. Opened without
    blocking and checked before it is read: a named pipe that nothing writes to blocked the
    open for ever, without a word, and a device (`/dev/zero`) would be read without end. A
    pipe with a writer (`--config <(...)`, `/dev/stdin`) is read as it comes, for at most
    `CONFIG_PIPE_WAIT_S`, and what it held kept for this process's later loads of it."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{path}: a directory, not a file: {GIVE_CONFIG}")
        if stat.S_ISFIFO(mode):
            status = os.fstat(descriptor)
            pipe = status.st_dev, status.st_ino
            data = _PIPES_READ.get(pipe) or _read_pipe(path, descriptor)
            _PIPES_READ[pipe] = data
        elif stat.S_ISREG(mode):
            with os.fdopen(os.dup(descriptor), "rb") as file:
                data = file.read(CONFIG_BYTES_MAX + 1)
        else:
            raise ConfigError(f"{path}: a device or a socket, not a file: {GIVE_CONFIG}")
    finally:
        os.close(descriptor)
    if len(data) > CONFIG_BYTES_MAX:
        raise ConfigError(
            f"{path}: over {CONFIG_BYTES_MAX:,} bytes: no venue's config is; {GIVE_CONFIG}"
        )
    return data


def _read_pipe(path: Path, descriptor: int) -> bytes:
    """What a pipe opened without blocking holds, up to its writer's end, or to one byte past
    `CONFIG_BYTES_MAX`: nothing and no writer (a named pipe nothing writes to, a `<(...)`
    already read) is refused at once, a writer that does not finish in `CONFIG_PIPE_WAIT_S`
    when the wait is up."""
    deadline = time.monotonic() + CONFIG_PIPE_WAIT_S
    chunks: list[bytes] = []
    size = 0
    while size <= CONFIG_BYTES_MAX:
        try:
            chunk = os.read(descriptor, min(PIPE_READ_BYTES, CONFIG_BYTES_MAX + 1 - size))
        except BlockingIOError:  # a writer, with nothing written yet: wait for it, bounded
            left_s = deadline - time.monotonic()
            if left_s <= 0 or not select.select([descriptor], [], [], left_s)[0]:
                raise ConfigError(
                    f"{path}: a pipe whose writer did not finish within"
                    f" {CONFIG_PIPE_WAIT_S:g} s: {GIVE_CONFIG}"
                ) from None
            continue
        if not chunk:  # the writer's end (or none ever: a named pipe nothing writes to)
            if not chunks:
                raise ConfigError(f"{path}: a pipe with no writer and nothing in it: {GIVE_CONFIG}")
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def load_to_build(path: Path) -> VenueConfig:
    """`load`, for a venue about to be built from the file (a demo's): its build tables are
    checked too (`build_problem`), ConfigError naming the file."""
    config = load(path)
    found = build_problem(config)
    if found is not None:
        raise ConfigError(f"{path}: {found}")
    return config


def problem(config: VenueConfig) -> str | None:
    """The first mistake in what every start reads (`[[api_keys]]`: a key given twice, an
    unknown scope, an account id no account can have), naming the entry; None for a sound
    config. The tables a venue is built from are checked only when one is (`build_problem`):
    a venue that exists ignores them."""
    return (
        _duplicate("api_keys", "key", [entry.key for entry in config.api_keys])
        or _first(map(_scopes_problem, config.api_keys))
        or _first(map(_key_account_id_problem, config.api_keys))
        or _trusted_proxies_problem(config.limits.trusted_proxies)
        or _cors_origins_problem(config.gateway.cors_origins)
    )


def _trusted_proxies_problem(entries: tuple[str, ...]) -> str | None:
    """`[limits] trusted_proxies` names only IPs and networks: a typo would otherwise trust
    nobody (or the wrong host) without a word."""
    try:
        trusted_networks(entries)
    except ValueError as bad:
        return f"[limits] trusted_proxies: {bad}"
    return None


def trusted_networks(
    entries: Iterable[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`[limits] trusted_proxies`: each an IP or a CIDR (`10.0.0.0/8`; host bits allowed);
    ValueError naming the first that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


def _cors_origins_problem(entries: tuple[str, ...]) -> str | None:
    """`[gateway] cors_origins` names only web origins: a path, a `*` or a typo would
    otherwise let no page in (or, for `*`, every page) without a word."""
    for entry in entries:
        try:
            cors_origin(entry)
        except ValueError as bad:
            return f"[gateway] cors_origins: {bad}"
    return None


def cors_origin(entry: str) -> str:
    """A `[gateway] cors_origins` entry as a browser sends its page's `Origin`: the scheme and
    host lower case, an IPv6 host compressed, the port only when not the scheme's default
    (`https://app.example.com`, `http://127.0.0.1:3000`, `http://[::1]:8080`); ValueError
    naming an entry no browser sends (`_origin_host`), which would never match, and why."""
    scheme, separator, authority = entry.strip().partition("://")
    scheme = scheme.lower()
    if entry.strip() in ("*", "null"):
        raise ValueError(f"{entry!r} is not allowed: list each origin whose pages may call the API")
    if not separator or scheme not in ORIGIN_SCHEMES:
        raise ValueError(f"{entry!r} is not an origin: http:// or https:// and a host")
    # a browser reads a backslash as a slash: what follows it is a path
    if not authority or any(mark in authority for mark in "/\\?#@ \t"):
        raise ValueError(
            f"{entry!r} is not an origin: a scheme, a host and a port only (no path, no"
            " trailing slash), as `https://app.example.com`"
        )
    if "%" in authority:  # a browser decodes a host's escapes, and sends no IPv6 zone
        raise ValueError(f"{entry!r} is not an origin: no %-escapes nor IPv6 zones in its host")
    host, port = _host_and_port(entry, authority.lower())
    host = _origin_host(entry, host)
    default = port is None or port == ORIGIN_SCHEMES[scheme]
    return f"{scheme}://{host}" if default else f"{scheme}://{host}:{port}"


def _origin_host(entry: str, host: str) -> str:
    """`host` (lower case) as a browser serializes it in an `Origin`: an IPv6 address
    compressed; a domain of ASCII labels (a browser sends a non-ASCII one in punycode, so
    such an entry would never match); an IPv4 address as four numbers (a browser reads a
    host ending in a number as one, and writes it so). ValueError naming `entry`."""
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            said = f"{entry!r} is not an origin: its host is not an IPv6 address"
            raise ValueError(said) from None
    if not host.isascii():
        raise ValueError(
            f"{entry!r} is not an origin: its host is not ASCII: list it in punycode (xn--...),"
            " as browsers send it"
        )
    labels = host.split(".")
    if "" in labels:
        raise ValueError(
            f"{entry!r} is not an origin: its host has an empty label (a trailing dot, or '..')"
        )
    odd = next((mark for mark in host if not (mark.isalnum() or mark in "-_.")), None)
    if odd is not None:
        raise ValueError(
            f"{entry!r} is not an origin: its host has {odd!r}: letters, digits, '-', '_' and"
            " dots only"
        )
    if _ends_in_a_number(labels[-1]) and not _is_ipv4(host):
        raise ValueError(
            f"{entry!r} is not an origin: its host is not an IPv4 address as browsers write"
            " it (four numbers 0..255 without leading zeros, as 127.0.0.1)"
        )
    return host


def _ends_in_a_number(label: str) -> bool:
    """A host whose last label is a number (decimal or 0x hex) is an IPv4 address to a
    browser (the URL standard's "ends in a number")."""
    if label.startswith("0x"):  # "0x" alone too: the number 0
        return all(digit in "0123456789abcdef" for digit in label[2:])
    return label.isdigit()


def _is_ipv4(host: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(host)) == host
    except ValueError:
        return False


def _host_and_port(entry: str, authority: str) -> tuple[str, int | None]:
    """`host[:port]` (`[v6]:port` for IPv6) of an origin; ValueError naming `entry`."""
    if authority.startswith("["):
        host, closed, rest = authority.partition("]")
        if not closed:
            raise ValueError(f"{entry!r} is not an origin: its IPv6 address has no closing ']'")
        host += "]"
        port_text = rest.removeprefix(":")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{entry!r} is not an origin: text after the IPv6 address")
    else:
        host, _, port_text = authority.partition(":")
    if not host or host == "[]":
        raise ValueError(f"{entry!r} is not an origin: it has no host")
    if not port_text:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) <= 65535:
        raise ValueError(f"{entry!r} is not an origin: its port is not within 1..65535")
    return host, int(port_text)


def _nothing_to_trade(config: VenueConfig) -> str | None:
    """A config with no asset and no instrument (empty, truncated, only comments) built a
    venue of nothing into a new data directory and served it: its build tables are read
    once, so such a venue stays empty. A venue that exists may be started without them."""
    if config.assets or config.instruments:
        return None
    return (
        "no [[assets]] and no [[instruments]]: a venue built from it would list nothing;"
        f" {GIVE_CONFIG}"
    )


def build_problem(config: VenueConfig) -> str | None:
    """The first mistake a venue built from `config` would otherwise take as something else
    (a second account 1 funding the first, a key of no account, a cap of "0" read as none),
    naming the table entry and its key; None for a sound config. What depends on the day
    (a bill's term) is `setup_commands`'s to check."""
    accounts = {account.id for account in config.accounts}
    return (
        _nothing_to_trade(config)
        or _duplicate("assets", "code", [asset.code for asset in config.assets])
        or _case_twins("assets", "code", [asset.code for asset in config.assets])
        or _duplicate("instruments", "symbol", [entry.symbol for entry in config.instruments])
        or _case_twins("instruments", "symbol", [entry.symbol for entry in config.instruments])
        or _duplicate("reserves", "asset", [reserve.asset for reserve in config.reserves])
        or _duplicate("accounts", "id", [account.id for account in config.accounts])
        or _first(map(_asset_problem, config.assets))
        or _first(_instrument_problem(entry, config) for entry in config.instruments)
        or _first(map(_account_problem, config.accounts))
        or _first(_key_account_problem(entry, accounts) for entry in config.api_keys)
    )


def _first(problems: Iterable[str | None]) -> str | None:
    return next((found for found in problems if found is not None), None)


def _duplicate(table: str, key: str, values: list[Any]) -> str | None:
    """Two entries of one table with the same `key`: the venue would take only the first
    (or, for reserves, the last), and what the second configures would go elsewhere."""
    seen = set()
    for value in values:
        if value in seen:
            return f"[[{table}]] {key} {value!r} is given twice: each {key} once"
        seen.add(value)
    return None


def _case_twins(table: str, key: str, names: list[str]) -> str | None:
    """Two asset codes or symbols that differ only by case ("USD", "usd"): two assets or
    instruments that users could not tell apart (`admin.list_asset` and
    `admin.list_instrument` refuse the second too)."""
    for index, name in enumerate(names):
        twin = case_twin(name, names[:index])
        if twin is not None:
            return (
                f"[[{table}]] {key} {name!r} differs from {twin!r} only by case: two {table}"
                f" users could not tell apart; give each its own {key}"
            )
    return None


def _asset_problem(asset: AssetEntry) -> str | None:
    if not asset.code or not is_name(asset.code):
        return f"[[assets]] code {asset.code!r}: printable ASCII characters, no spaces"
    return None


def _instrument_problem(entry: InstrumentEntry, config: VenueConfig) -> str | None:
    """What the engine would refuse this listing for, said in the config's own keys."""
    where = f"[[instruments]] {entry.symbol!r}"
    for key in ("max_qty", "max_notional"):
        if getattr(entry, key) is not None and _is_zero(getattr(entry, key)):
            # the engine's 0 means "no cap": written out, "0" would silently cap nothing
            return f'{where}: {key} "0": a cap is positive; leave {key} out for none'
    if entry.base == entry.quote:
        return f"{where}: base and quote are both {entry.base}: two different assets"
    if not (0 <= entry.maker_fee_bps <= FEE_BPS_MAX and 0 <= entry.taker_fee_bps <= FEE_BPS_MAX):
        return f"{where}: maker_fee_bps and taker_fee_bps must be within 0..{FEE_BPS_MAX}"
    if (entry.kind is InstrumentKind.TBILL) != (entry.maturity is not None):
        return f"{where}: maturity: a T-bill needs one, and only a T-bill has one"
    try:
        spec = instrument_spec(entry, {asset.code: asset.scale for asset in config.assets})
    except ConfigError as error:
        return f"{where}: {str(error).removeprefix(f'{entry.symbol}: ')}"
    if not 0 < spec.price_band_bps <= BAND_BPS_MAX:
        return f'{where}: band_pct "{entry.band_pct}" must be above 0 and at most 100'
    found = (
        spec.problem()
        or bill_price_problem(spec, spec.reference_price)
        or notional_cap_problem(spec, listed_band_low(spec))
    )
    return None if found is None else f"{where}: {found.removeprefix(f'{entry.symbol} ')}"


def _account_problem(account: AccountEntry) -> str | None:
    where = f"[[accounts]] id {account.id}"
    if account.id <= 0:
        return f"{where}: account ids are above 0 (the venue's own are negative)"
    if account.id > ACCOUNT_ID_MAX:
        return f"{where}: account ids are at most {ACCOUNT_ID_MAX} (exact in every JSON client)"
    if not account.name.isprintable():  # a line break in it would forge a report's row
        return f"{where}: name {account.name!r}: printable characters only"
    return None


def _scopes_problem(entry: ApiKeyEntry) -> str | None:
    unknown = sorted(set(entry.scopes) - SCOPES)
    if unknown or not entry.scopes:
        where = f"[[api_keys]] key {entry.key!r}"
        return f"{where}: scopes {list(entry.scopes)}: give some of {sorted(SCOPES)}"
    return None


def _key_account_id_problem(entry: ApiKeyEntry) -> str | None:
    """A participant's account id is above 0 (`_account_problem`): a key of account 0 or of
    the venue's own (negative) would log on as no participant, and the gateway's rate
    limiter, which counts on a participant's id, would break its every logon and request."""
    if entry.account <= 0:
        return (
            f"[[api_keys]] key {entry.key!r}: account {entry.account}: a key's account id is"
            " above 0 (0 is no account, the venue's own are negative)"
        )
    return None


def _key_account_problem(entry: ApiKeyEntry, accounts: set[int]) -> str | None:
    """A fresh venue's key of no configured account would log on and be refused everything.
    (A venue that exists may have opened the account since, with `venue admin open-account`:
    not checked then.)"""
    if entry.account not in accounts:
        return (
            f"[[api_keys]] key {entry.key!r}: account {entry.account} is not one of [[accounts]]"
            " (for an account opened later, `venue admin issue-key` issues its key)"
        )
    return None


def _is_zero(text: str) -> bool:
    return text.strip("0.") == "" and text != ""


def decimals_of(text: str) -> int:
    """How many decimals a decimal string is written with ("0.01" -> 2)."""
    return len(text.partition(".")[2])


def instrument_spec(entry: InstrumentEntry, scales: dict[str, int]) -> InstrumentSpec:
    """The engine's spec: prices at the tick's decimals, quantities at the base's scale."""
    if entry.base not in scales or entry.quote not in scales:
        raise ConfigError(f"{entry.symbol}: list the assets {entry.base} and {entry.quote}")
    price_decimals = decimals_of(entry.tick)
    qty_decimals = scales[entry.base]
    quote_decimals = scales[entry.quote]
    try:
        return InstrumentSpec(
            symbol=entry.symbol,
            kind=entry.kind,
            base=entry.base,
            quote=entry.quote,
            price_decimals=price_decimals,
            price_tick=parse_units(entry.tick, price_decimals),
            qty_decimals=qty_decimals,
            qty_step=parse_units(entry.step, qty_decimals),
            min_qty=parse_units(entry.min_qty, qty_decimals),
            quote_decimals=quote_decimals,
            min_notional=parse_units(entry.min_notional, quote_decimals),
            price_band_bps=parse_units(entry.band_pct, 2),  # percent to basis points
            reference_price=parse_units(entry.reference_price, price_decimals),
            maker_fee_bps=entry.maker_fee_bps,
            taker_fee_bps=entry.taker_fee_bps,
            maturity_us=_maturity_us(entry.maturity),
            excluded_jurisdictions=entry.excluded_jurisdictions,
            max_qty=_cap(entry.max_qty, qty_decimals),
            max_notional=_cap(entry.max_notional, quote_decimals),
        )
    except ValueError as error:
        raise ConfigError(f"{entry.symbol}: {error}") from None


def setup_commands(config: VenueConfig, now_us: int, *, building: bool = True) -> list[Command]:
    """The commands that build the configured venue from nothing at `now_us`, in order;
    ConfigError for what no venue could take (an unknown asset, an amount finer than its
    asset). With `building` (a venue about to be built from them; a venue that exists does
    not list the config's entries again), also a bill more than a year out from `now_us`, and
    any command a venue built from nothing would refuse (`rehearse`); and the bills matured by
    `now_us` are left out, with what goes with them (`matured_bills`)."""
    if building:
        found = build_problem(config)
        if found is not None:
            raise ConfigError(found)
    commands = _setup_commands(config, now_us, check_bill_terms=building)
    if building:
        commands = _without(commands, matured_bills(config, now_us))
        rehearse(config, commands, now_us)
    return commands


class LeftOut(msgspec.Struct, frozen=True):
    """A T-bill of the config that matured before the build, left out of it, and what goes
    with it: its token, unless an instrument built names it (`kept_by`), with the token's
    reserves and the deposits of it."""

    symbol: str
    maturity: datetime.date
    asset: str  # its token
    reserves: bool  # the token's [[reserves]] entry is left out with it
    deposit_accounts: tuple[int, ...]  # the accounts whose deposits of the token are left out
    kept_by: str | None = None  # an instrument built that names the token: it stays

    def detail(self) -> str:
        """The warning's words: what matured, and what the venue starts without."""
        said = (
            f"{self.symbol} matured on {self.maturity.isoformat()} (00:00 UTC), before this"
            " build: it would never trade."
        )
        if self.kept_by is not None:
            return (
                f"{said} Left out alone: its asset {self.asset} stays, as {self.kept_by} names it"
            )
        with_it = [f"its asset {self.asset}"]
        if self.reserves:
            with_it.append("that asset's [[reserves]]")
        if self.deposit_accounts:
            plural = "s" if len(self.deposit_accounts) > 1 else ""
            accounts = ", ".join(map(str, self.deposit_accounts))
            with_it.append(f"its deposits to account{plural} {accounts}")
        *first, last = with_it
        return f"{said} Left out with it: {', '.join(first) + ' and ' if first else ''}{last}"


def matured_bills(config: VenueConfig, now_us: int) -> list[LeftOut]:
    """The config's T-bills that have matured by `now_us`, which a build leaves out (the
    engine would refuse their listing, MATURITY_PASSED: the config was right, and has aged),
    each with what goes with it, so that the venue starts like the file without the bill: a
    bill's token would otherwise be listed, attested and minted with no market to trade it
    and no maturity to redeem it. The token stays when another instrument names it."""
    matured = [
        entry
        for entry in config.instruments
        if entry.maturity is not None and _maturity_us(entry.maturity) <= now_us
    ]
    gone = {entry.symbol for entry in matured}
    left_out = []
    for bill in matured:
        assert bill.maturity is not None
        kept_by = next(
            (
                entry.symbol
                for entry in config.instruments
                if entry.symbol not in gone and bill.base in (entry.base, entry.quote)
            ),
            None,
        )
        if kept_by is not None:
            left_out.append(LeftOut(bill.symbol, bill.maturity, bill.base, False, (), kept_by))
            continue
        reserves = any(reserve.asset == bill.base for reserve in config.reserves)
        accounts = tuple(a.id for a in config.accounts if bill.base in a.deposits)
        left_out.append(LeftOut(bill.symbol, bill.maturity, bill.base, reserves, accounts))
    return left_out


def unapplied_entries(
    config: VenueConfig,
    symbols: Collection[str],
    assets: Collection[str],
    accounts: Collection[int],
    now_us: int,
) -> dict[str, list[Any]]:
    """The build tables' entries a venue that exists lacks, by table (`instruments`, `assets`,
    `accounts`; a table with none is left out): entries added to the file after the build,
    which a restart ignores, as it reads the build tables only once. A bill that has matured
    (left out of a build, or never listed) and its token are not counted."""
    matured = {left.symbol for left in matured_bills(config, now_us)}
    tokens = {left.asset for left in matured_bills(config, now_us) if left.kept_by is None}
    missing: dict[str, list[Any]] = {
        "instruments": [
            entry.symbol
            for entry in config.instruments
            if entry.symbol not in symbols and entry.symbol not in matured
        ],
        "assets": [
            asset.code
            for asset in config.assets
            if asset.code not in assets and asset.code not in tokens
        ],
        "accounts": [account.id for account in config.accounts if account.id not in accounts],
    }
    return {table: entries for table, entries in missing.items() if entries}


def _without(commands: list[Command], left_out: list[LeftOut]) -> list[Command]:
    """`commands` without those of the bills left out and of the assets that go with them.
    (Every entry was converted first: a mistake in a left-out one still stops the start.)"""
    symbols = {left.symbol for left in left_out}
    assets = {left.asset for left in left_out if left.kept_by is None}

    def kept(command: Command) -> bool:
        if isinstance(command, ListInstrument):
            return command.spec.symbol not in symbols
        if isinstance(command, ListAsset):
            return command.code not in assets
        if isinstance(command, AttestReserves | Deposit):
            return command.asset not in assets
        return True

    return [command for command in commands if kept(command)]


# The one refusal of a setup command a fresh venue takes, with a warning: a bill that matured
# between `setup_commands` (which leaves out every bill matured by then, `matured_bills`) and
# its listing's execution a moment later, at midnight UTC. Every other refusal is a mistake in
# the config, and the venue does not start on it.
TOLERATED_REFUSALS = frozenset({ErrorCode.MATURITY_PASSED})


def rehearse(config: VenueConfig, commands: list[Command], now_us: int) -> None:
    """Run `commands` on a venue in memory: ConfigError naming the first refused one (a
    deposit beyond its asset's reserves, say) unless its refusal is `TOLERATED_REFUSALS`.
    Done before the real build, so that a refused config leaves no journal behind."""
    staleness = reserve_staleness_max_us(config)
    venue = Venue(EngineConfig(reserve_staleness_max_us=staleness), Ledger())
    for command in commands:
        events = venue.execute(msgspec.structs.replace(command, ts_us=now_us))
        refused = next((e for e in events if isinstance(e, CommandRejected)), None)
        if refused is not None and refused.reason not in TOLERATED_REFUSALS:
            raise ConfigError(refusal_text(refused))


def refusal_text(refused: CommandRejected) -> str:
    """A refused setup command in one line: what, whose, why."""
    whose = f" account {refused.account}" if refused.account else ""
    whose += f" {refused.symbol}" if refused.symbol is not None else ""
    return f"{refused.command}{whose} refused ({refused.reason.name}): {refused.detail}"


def _setup_commands(config: VenueConfig, now_us: int, *, check_bill_terms: bool) -> list[Command]:
    scales = {asset.code: asset.scale for asset in config.assets}
    commands: list[Command] = [
        ListAsset(code=asset.code, scale=asset.scale) for asset in config.assets
    ]
    for entry in config.instruments:
        if not all(map(is_jurisdiction, entry.excluded_jurisdictions)):
            raise ConfigError(f"{entry.symbol}: excluded_jurisdictions: {jurisdictions.PROBLEM}")
    specs = [instrument_spec(entry, scales) for entry in config.instruments]
    for spec in specs:
        if check_bill_terms:
            _check_bill_term(spec, now_us)
    commands += [ListInstrument(spec=spec) for spec in specs]
    for reserve in config.reserves:
        amount = _amount(reserve.amount, reserve.asset, scales, "[[reserves]]")
        commands.append(AttestReserves(asset=reserve.asset, amount=amount, as_of_us=now_us))
    for account in config.accounts:
        if not is_jurisdiction(account.jurisdiction):
            raise ConfigError(f"account {account.id}: {jurisdictions.PROBLEM}")
        commands.append(
            OpenAccount(
                account=account.id,
                name=account.name,
                kyc_approved=account.kyc_approved,
                jurisdiction=account.jurisdiction,
            )
        )
        for asset, text in account.deposits.items():
            amount = _amount(text, asset, scales, f"[[accounts]] id {account.id}: deposits")
            commands.append(Deposit(account=account.id, asset=asset, amount=amount))
    return commands


def _check_bill_term(spec: InstrumentSpec, now_us: int) -> None:
    """A bill maturing further out than any T-bill runs is a mistyped date: the venue does not
    start on it (`admin.list_instrument` refuses it too, `tbill.listing_term_problem`). A bill
    that has matured since the config was written is left out at the build instead, with a
    warning (`core.recovery.Recovery._build_from_config`): the config was right, and has
    aged."""
    if spec.maturity_us:
        problem = tbill.listing_term_problem(now_us, spec.maturity_us)
        if problem is not None:
            raise ConfigError(f"{spec.symbol}: {problem}")


def reserve_staleness_max_us(config: VenueConfig) -> int:
    return config.venue.reserve_staleness_hours * HOUR_US


def _amount(text: str, asset: str, scales: dict[str, int], where: str) -> int:
    """`text` in `asset`'s units; a refusal says the table it is in (`where`) and, for an
    asset no `[[assets]]` entry lists, which are listed (until session 28: `unknown asset
    ZZZ` alone, in a file of dozens of entries)."""
    if asset not in scales:
        listed = ", ".join(scales) or "none"
        raise ConfigError(f"{where}: unknown asset {asset} (the [[assets]] codes: {listed})")
    try:
        return parse_units(text, scales[asset])
    except ValueError as error:
        raise ConfigError(f"{where}: {asset} amount: {error}") from None


def _cap(text: str | None, decimals: int) -> int:
    return 0 if text is None else parse_units(text, decimals)


def _maturity_us(maturity: datetime.date | None) -> int:
    if maturity is None:
        return 0
    midnight = datetime.datetime.combine(maturity, datetime.time(), datetime.UTC)
    return int(midnight.timestamp()) * 1_000_000
