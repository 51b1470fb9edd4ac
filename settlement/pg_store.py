"""The ledger store on PostgreSQL: `PostgresLedgerStore(dsn)`, the cluster mode's `LedgerStore`.

Behaves as `SqliteLedgerStore` does (store.py owns the contract and the shared checks, row
encoding, hash chain and verification), so the same transfers give the same `head_hash()`
and the same tampering the same `verify()` findings. One transaction per batch. Two writers
cannot both append: each write takes its table's lock in EXCLUSIVE mode first (readers go
on; writers queue, at most `BUSY_TIMEOUT_MS`), then reads the head and checks the batch's
ids against it. Reads that need one view (`balances`, `verify`) run in one REPEATABLE READ
transaction. Append-only: triggers refuse UPDATE, DELETE and TRUNCATE. Synchronous, one
connection, one thread (the store runs on its own, core/store_thread.py). A server that stops
answering is an error, not a block: TCP keepalives, `TCP_USER_TIMEOUT_MS` and
`STATEMENT_TIMEOUT_MS`. A connection the server dropped (restarted, the session terminated)
is opened again while the server has not answered for under `RECONNECT_WINDOW_S` in all (one
that answers it is restarting is waited for up to `RECOVERY_WINDOW_S`: `ReconnectWindow`),
and the method run once more on it: each method is one transaction, and a batch whose COMMIT
reply was lost may have committed, which the idempotent re-apply makes safe (the same batch
again is accepted, other contents under its ids refused). Other failures surface as psycopg
errors (fatal to the venue, as any failed store write); a batch is written whole or not at
all. At start, a server not up yet is waited for (`wait_until_up`). Tables live in the
connection's schema (normally `public`). `read_only=True` (the checks: `venue verify`,
`venue ledger`): a read-only session that takes no lock and makes no schema.
"""

import ctypes
import dataclasses
import functools
import logging
import re
import selectors
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from selectors import EVENT_READ, EVENT_WRITE
from typing import Any, Final, ParamSpec, TypeVar, cast

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_attempts, conninfo_to_dict, make_conninfo

from settlement.store import (
    BUSY_TIMEOUT_MS,
    GENESIS_HASH,
    ITERATION_PAGE_TRANSFERS,
    KNOWN_KINDS,
    BatchRejectedError,
    BatchSequenceError,
    LedgerStoreError,
    SummedTransfers,
    TransferRow,
    account_is_new,
    asset_is_new,
    attestation_is_new,
    balance_problems,
    batch_hash,
    batch_rows,
    chain_problems,
    check_account,
    check_asset,
    check_attestation,
    sequence_problem,
    transfer_of,
)
from settlement.transfers import Transfer

SCHEMA_VERSION: Final = 1
CONNECT_TIMEOUT_S: Final = 10  # a server that does not answer on loopback or a LAN is down
STOP_LOOK_S: Final = 0.25  # `try_connect` looks whether it is to stop at least this often
# SQLSTATEs with which a server refuses a login itself, for good (`ConnectFailure`): class 28
# (a wrong password, a role not there, a pg_hba.conf rule), 3D000 (the database not there),
# 42501 (no CONNECT privilege). Any other a server sends is its own state, waited for: 53300
# (no slot left), 57P03 (starting, stopping), class 08 (a pooler whose database is down).
LOGIN_REFUSED_CLASSES: Final = ("28",)
LOGIN_REFUSED_STATES: Final = frozenset({"3D000", "42501"})
# libpq's text of a server's error at VERBOSE: "<severity, localized>:  <SQLSTATE>: <words>"
SQLSTATE_IN_MESSAGE: Final = re.compile(r":  ([0-9A-Z]{5}): ")
PQERRORS_VERBOSE: Final = 2  # libpq's PGVerbosity
# A statement past this is stuck (a batch is ~1,000 transfers, a read one page or one SUM); a
# lock wait ends first at BUSY_TIMEOUT_MS. Over a minute is an outage, fatal, not a wait.
STATEMENT_TIMEOUT_MS: Final = 60_000
# An idle connection is probed after KEEPALIVE_IDLE_S, then every KEEPALIVE_INTERVAL_S, and
# declared dead after KEEPALIVE_COUNT probes unanswered (~25 s): a server gone silently (its
# machine off, the network cut) becomes an error instead of an endless read.
KEEPALIVE_IDLE_S: Final = 10
KEEPALIVE_INTERVAL_S: Final = 5
KEEPALIVE_COUNT: Final = 3
TCP_USER_TIMEOUT_MS: Final = 30_000  # data sent and unacknowledged this long: the link is dead
# A dropped connection is opened again while the server does not answer for this long in
# all (a postmaster restarts in well under a second) before the failure stands; meanwhile
# the venue trades on and the store's queue fills (backpressure).
RECONNECT_WINDOW_S: Final = 5.0
# A server that answers it cannot take connections now (starting up, recovering, shutting
# down: SQLSTATE 57P03) is restarting, not gone, and is waited for this long from the lost
# connection. A restart after a crash or an immediate stop fsyncs the data directory,
# replays the WAL since the last checkpoint and checkpoints: 2-4.5 s for a near-empty test
# database on a loaded 2-core machine, more with a real one. Over a minute is an outage.
RECOVERY_WINDOW_S: Final = 60.0
RECONNECT_POLL_S: Final = 0.25  # between attempts: a refused connection costs ~1 ms
# A venue may start with its PostgreSQL (a machine's boot, a supervisor starting both): one
# that refuses connections or says it is starting up is waited for this long, then the start
# is refused. PostgreSQL's own start takes seconds; a crash recovery's WAL replay, longer.
START_WAIT_S: Final = 30.0
# The SQLSTATE of a server that cannot take connections now (cannot_connect_now: starting
# up, in recovery, shutting down): restarting, not gone (`ReconnectWindow`).
RESTARTING_STATE: Final = "57P03"
# How libpq words a server's 57P03 refusal ("the database system is starting up", "... is
# not yet accepting connections", "... is in recovery mode", "... is shutting down"), read
# only where no SQLSTATE can be (`_error_verbosity_setter` None), as before session 37: a
# server whose messages are translated then has `RECONNECT_WINDOW_S` alone.
_RESTARTING_REFUSAL: Final = "the database system is "
SCHEMA_LOCK_KEY: Final = 0x7665_6E75_6501  # advisory lock: one process creates the schema
_Key = TypeVar("_Key", int, str)
_Parameters = ParamSpec("_Parameters")
_Result = TypeVar("_Result")
log = logging.getLogger("venue.store")

_APPEND_ONLY_TABLES: Final = ("assets", "accounts", "transfers", "batches", "attestations")


def _refuse(table: str) -> str:
    return (
        f"CREATE TRIGGER {table}_refuse_update BEFORE UPDATE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION ledger_refuse();"
        f"CREATE TRIGGER {table}_refuse_delete BEFORE DELETE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION ledger_refuse();"
        f"CREATE TRIGGER {table}_refuse_truncate BEFORE TRUNCATE ON {table}"
        " FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse();"
    )


_SCHEMA: Final = f"""
CREATE TABLE assets (
    code TEXT PRIMARY KEY CHECK (char_length(code) BETWEEN 1 AND 32),
    scale INTEGER NOT NULL CHECK (scale BETWEEN 0 AND 18)
);
CREATE TABLE accounts (
    account_id BIGINT PRIMARY KEY CHECK (account_id <> 0),
    name TEXT NOT NULL
);
CREATE TABLE transfers (
    transfer_id BIGINT PRIMARY KEY CHECK (transfer_id > 0),
    chain_id BIGINT NOT NULL,
    debit_account BIGINT NOT NULL,
    credit_account BIGINT NOT NULL CHECK (credit_account <> debit_account),
    asset TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    kind TEXT NOT NULL,
    ts_us BIGINT NOT NULL
);
CREATE TABLE batches (
    batch_no BIGINT PRIMARY KEY,
    first_transfer_id BIGINT NOT NULL,
    last_transfer_id BIGINT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE TABLE attestations (
    asset TEXT NOT NULL,
    as_of_us BIGINT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (asset, as_of_us)
);
CREATE FUNCTION ledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% are append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;
{"".join(_refuse(table) for table in _APPEND_ONLY_TABLES)}
CREATE TABLE ledger_schema (version INTEGER NOT NULL);
INSERT INTO ledger_schema (version) VALUES ({SCHEMA_VERSION});
"""

_TRANSFER_COLUMNS: Final = (
    "transfer_id, chain_id, debit_account, credit_account, asset, amount, kind, ts_us"
)
_COPY_TRANSFERS: Final = f"COPY transfers ({_TRANSFER_COLUMNS}) FROM STDIN"
_INSERT_BATCH: Final = (
    "INSERT INTO batches (batch_no, first_transfer_id, last_transfer_id, prev_hash, hash)"
    " VALUES (%s, %s, %s, %s, %s)"
)
_SELECT_HEAD: Final = (
    "SELECT batch_no, last_transfer_id, hash FROM batches ORDER BY batch_no DESC LIMIT 1"
)
_SELECT_RANGE: Final = (
    f"SELECT {_TRANSFER_COLUMNS} FROM transfers"
    " WHERE transfer_id BETWEEN %s AND %s ORDER BY transfer_id"
)
_SELECT_PAGE: Final = (
    f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE transfer_id > %s"
    " ORDER BY transfer_id LIMIT %s"
)
_SELECT_BALANCES: Final = """
SELECT account_id, asset, SUM(amount) FROM (
    SELECT credit_account AS account_id, asset, amount FROM transfers
    UNION ALL
    SELECT debit_account, asset, -amount FROM transfers
) AS legs GROUP BY account_id, asset HAVING SUM(amount) <> 0
"""
_SELECT_BALANCES_THROUGH: Final = """
SELECT account_id, asset, SUM(amount) FROM (
    SELECT credit_account AS account_id, asset, amount FROM transfers WHERE transfer_id <= %s
    UNION ALL
    SELECT debit_account, asset, -amount FROM transfers WHERE transfer_id <= %s
) AS legs GROUP BY account_id, asset HAVING SUM(amount) <> 0
"""
_SELECT_LAST_THROUGH: Final = "SELECT MAX(transfer_id) FROM transfers WHERE transfer_id <= %s"
_SELECT_UNKNOWN_KIND_THROUGH: Final = (
    "SELECT transfer_id, kind FROM transfers WHERE transfer_id <= %s AND kind <> ALL(%s)"
    " ORDER BY transfer_id LIMIT 1"
)
_SELECT_UNREGISTERED_ACCOUNTS: Final = """
SELECT account_id FROM (
    SELECT debit_account AS account_id FROM transfers
    UNION SELECT credit_account FROM transfers
) AS used WHERE account_id NOT IN (SELECT account_id FROM accounts) ORDER BY account_id
"""
_SELECT_UNREGISTERED_ASSETS: Final = (
    "SELECT DISTINCT asset FROM transfers WHERE asset NOT IN (SELECT code FROM assets)"
)


def _one_line(error: BaseException) -> str:
    """A driver's message, often several lines (detail, hint), on one."""
    return " ".join(str(error).split())


def wait_until_up(
    dsn: str, wait_s: float = START_WAIT_S, stop_requested: Callable[[], bool] = lambda: False
) -> bool:
    """True once PostgreSQL at `dsn` accepts a connection (`try_connect`). While it is not
    taking connections (nothing answers, or it answers with a code of its own state: 57P03
    starting up, 53300 full), try again every `RECONNECT_POLL_S` for up to `wait_s`, saying
    so in one log line; then raise `psycopg.OperationalError` saying how long it was waited
    for. A login refused or a DSN wrong (`ConnectFailure.refused`), or a host's name that
    does not resolve, is raised at once. Decided by SQLSTATE, never words (until session
    37 English words: a server whose messages are translated, `lc_messages`, was refused at
    once while it started); where no SQLSTATE can be read (`_error_verbosity_setter` None)
    every failure without one is waited for, each one the words waited for included.
    False, at once, when `stop_requested()` says so (`venue serve` stopped while it
    waits)."""
    deadline = time.monotonic() + wait_s
    waiting = False
    while not stop_requested():
        failure = try_connect(dsn, CONNECT_TIMEOUT_S, stop_requested)
        if failure is None:
            return True
        if stop_requested():
            break
        if failure.refused or failure.unresolved:  # (a name: refused at once, as before)
            raise psycopg.OperationalError(failure.said)
        if time.monotonic() >= deadline:
            raise psycopg.OperationalError(
                f"PostgreSQL did not accept a connection within {wait_s:g} s: {failure.said}"
            )
        if not waiting:
            waiting = True
            log.warning(
                "the ledger store's PostgreSQL is not accepting connections yet (%s):"
                " waiting up to %g s",
                failure.said,
                wait_s,
            )
        time.sleep(RECONNECT_POLL_S)
    return False


@dataclasses.dataclass(frozen=True)
class ConnectFailure:
    """A connection `try_connect` did not make, all libpq's attempts at it together (each
    host of the DSN, each address of a host's name; with sslmode prefer, the default, one
    with SSL and one without on each): the SQLSTATEs the servers refused them with (none:
    nothing answered, the client gave up (its SSL settings, the timeout, no password to
    give, a server or proxy closing it as SSL is asked for), or libpq's verbosity could not
    be set here: `_error_verbosity_setter`), libpq's
    messages, as it said them, whether a server asked for a password and none was given
    (libpq's `PQconnectionNeedsPassword`: the client gives up, no SQLSTATE), how many
    attempts were made and how many of them had no answer (no code, no password asked),
    whether the DSN itself is wrong (`dsn_wrong`:
    nothing could be tried, or libpq refused one of its values before connecting), and
    whether none of its hosts' names resolved (`unresolved`: nothing tried)."""

    sqlstates: frozenset[str]
    message: str
    no_password: bool = False
    attempts: int = 1
    unanswered: int = 0
    dsn_wrong: bool = False
    unresolved: bool = False

    @property
    def refuses_login(self) -> bool:
        """Whether the servers that answered refused this login themselves, every code they
        sent one of `LOGIN_REFUSED_CLASSES` or `LOGIN_REFUSED_STATES`, or asked for a password
        this core has not, and at least one answered so: for good, till an operator fixes it,
        not waited out. An attempt that had no answer (a host down or silent) says nothing
        either way; one whose server answered with any other code (53300, 57P03) makes the
        whole failure the store's, waited for."""
        refused = all(
            state[:2] in LOGIN_REFUSED_CLASSES or state in LOGIN_REFUSED_STATES
            for state in self.sqlstates
        )
        return refused and (bool(self.sqlstates) or self.no_password)

    @property
    def refused(self) -> bool:
        """Whether this failure is the operator's to fix, not the store's to wait out: a
        login refused (`refuses_login`) or a
        DSN wrong."""
        return self.refuses_login or self.dsn_wrong

    @property
    def said(self) -> str:
        """The failure on one line, with how many attempts had no answer where some had: a
        refusal among hosts some of which did not answer may be a replica's (its pg_hba.conf
        taking the role's connections on the primary alone), the primary being down; a DSN
        wrong says so before libpq's or psycopg's words (`reason`)."""
        if self.dsn_wrong:
            return f"the DSN is wrong: {self.reason}"
        if self.unanswered:
            return f"{self.reason} ({self.unanswered} of {self.attempts} attempts did not answer)"
        return self.reason

    @property
    def reason(self) -> str:
        """`message` on one line, as libpq or psycopg said it: for a caller that says itself
        what failed (the cores: "the ledger store's PostgreSQL DSN is wrong (...)", which until
        session 38 went on "(the DSN is wrong: ...)")."""
        return " ".join(self.message.split())


def try_connect(
    dsn: str, timeout_s: float = CONNECT_TIMEOUT_S, stopped: Callable[[], bool] = lambda: False
) -> ConnectFailure | None:
    """Open and close one connection to `dsn`: None once made, else why not, each of its
    hosts (each address of a host's name) tried in turn, `timeout_s` each, as psycopg's
    connect does (`conninfo_attempts`: libpq's own `connect_timeout` holds for a blocking
    connect alone, and one deadline for all let a first host that never answers use it up);
    so one call takes up to attempts x `timeout_s`. Given up, its connection closed, within
    `STOP_LOOK_S` of `stopped()` saying so (a failure then, not to be read). The SQLSTATE a
    server refuses a connection with reaches psycopg's error as libpq's text alone (no
    `sqlstate`), in words the server and libpq localize; libpq writes the code into that
    text when the connection's error verbosity is VERBOSE (`FATAL:  28P01: ...`), set before
    the connection is polled, and it is read from there (`SQLSTATE_IN_MESSAGE`), never the
    words. A DSN that cannot be tried (`_attempts_of`) is a failure saying so, `dsn_wrong`."""
    try:
        attempts = _attempts_of(dsn)
    except _DsnWrong as wrong:
        return ConnectFailure(frozenset(), str(wrong), dsn_wrong=True)
    except psycopg.OperationalError as unresolved:  # no host's name resolves: as one down
        return ConnectFailure(frozenset(), str(unresolved), unanswered=1, unresolved=True)
    failures = []
    for attempt in attempts:
        if stopped():
            break
        failure = _try_attempt(attempt, timeout_s, stopped)
        if failure is None:
            return None
        failures.append(failure)
    return ConnectFailure(
        frozenset().union(*(failure.sqlstates for failure in failures)),
        "; ".join(failure.message for failure in failures) or "stopped",
        no_password=any(failure.no_password for failure in failures),
        attempts=len(attempts),
        unanswered=sum(failure.unanswered for failure in failures),
        dsn_wrong=any(failure.dsn_wrong for failure in failures),
    )


class _DsnWrong(Exception):
    """A DSN that cannot be tried at all, why in its message (libpq's or psycopg's words: the
    failure says it is the DSN's, `ConnectFailure.said`)."""


def _attempts_of(dsn: str) -> list[dict[str, Any]]:
    """`dsn`'s attempts, as psycopg's connect splits them (`conninfo_attempts`, its hosts'
    names resolved); `_DsnWrong` for a DSN that cannot be tried: its text not libpq's
    (`nonsense`, an option libpq does not know), its hosts and ports not matching (`could
    not match 2 port numbers to 3 hosts`), a host's name that Python cannot encode to look
    it up (`a..b`, a label over 63 characters: `UnicodeError`, which psycopg does not catch).
    A name that does not resolve (`psycopg.OperationalError`) is not the DSN's: a DNS down."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error as unparsed:
        raise _DsnWrong(_one_line(unparsed)) from unparsed
    try:
        return conninfo_attempts(params)
    except UnicodeError as unencoded:
        raise _DsnWrong(f"a host's name: {unencoded}") from unencoded
    except psycopg.OperationalError as failed:
        # psycopg's own words (not translated): its one error that is not the DSN's
        if str(failed).startswith("failed to resolve host"):
            raise
        raise _DsnWrong(_one_line(failed)) from failed
    except psycopg.Error as refused:
        raise _DsnWrong(_one_line(refused)) from refused


def _try_attempt(
    attempt: dict[str, Any], timeout_s: float, stopped: Callable[[], bool]
) -> ConnectFailure | None:
    """`try_connect` on one host (`conninfo_attempts`' `attempt`), within `timeout_s`."""
    pgconn = pq.PGconn.connect_start(make_conninfo(**attempt).encode())
    try:
        if pgconn.status == pq.ConnStatus.BAD and _values_refused(attempt):
            said = " ".join(pgconn.get_error_message().split())
            return ConnectFailure(frozenset(), said, dsn_wrong=True)
        _set_verbose_errors(pgconn)
        made = _polled(pgconn, time.monotonic() + timeout_s, stopped)
        if made:
            return None
        if pgconn.status == pq.ConnStatus.BAD:
            message = pgconn.get_error_message()
        else:  # still connecting: it did not answer in time
            where = f"{attempt.get('host', '')}:{attempt.get('port', '')}"
            message = f"{where}: no answer within {timeout_s:.0f} s"
        states = frozenset(SQLSTATE_IN_MESSAGE.findall(message))
        no_password = pgconn.needs_password
        answered = bool(states) or no_password
        return ConnectFailure(states, message, no_password, unanswered=0 if answered else 1)
    finally:
        pgconn.finish()


# The values libpq takes for the options it checks as a connection starts (PQconnectStart),
# each a superset of libpq's own (newer versions' included), compared as libpq compares them:
# exactly (strcmp: `sslmode=REQUIRE` is refused; the whole-diff review found a lower-cased
# comparison waited for it, a core holding the lease for ever), the protocol versions without
# case (pg_strcasecmp). A value outside them is the DSN's fault; one libpq refuses inside
# them (an option not listed: `keepalives=abc`) is waited for, the safe way.
_LIBPQ_CHOICES: Final = {
    "sslmode": {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
    "gssencmode": {"disable", "prefer", "require"},
    "channel_binding": {"disable", "prefer", "require"},
    "target_session_attrs": {
        "any", "read-write", "read-only", "primary", "standby", "prefer-standby"
    },
    "load_balance_hosts": {"disable", "random"},
    "sslcertmode": {"disable", "allow", "require"},
    "sslnegotiation": {"postgres", "direct"},
}  # fmt: skip
_LIBPQ_CHOICES_ANY_CASE: Final = {
    "ssl_min_protocol_version": {"tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3"},
    "ssl_max_protocol_version": {"tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3"},
}
_PORT_RANGE: Final = range(1, 65536)
# A port as libpq's parse_int_param reads one (strtol, base 10: spaces around, a sign): not
# Python's int(), which takes `5_432` and other scripts' digits libpq refuses
_PORT_NUMBER: Final = re.compile(r"\s*[+-]?[0-9]+\s*")


def _values_refused(attempt: dict[str, Any]) -> bool:
    """Whether a connection libpq failed as it was started (before any poll) failed on the
    DSN's values (`port=abc`, `sslmode=bogus`: libpq checks them as it starts, and psycopg
    does not), not on its connect (a Unix socket with no server, a network unreachable:
    those fail as at once): a port that is not a number libpq takes, or a value outside
    `_LIBPQ_CHOICES`. From the values alone, never a second connect (until session 37's fix
    round one with the host and port alone: a Unix-socket server appearing between the two,
    a boot, made the DSN "wrong") nor libpq's words (translated)."""
    port = str(attempt.get("port") or "")
    if port and _port_number(port) not in _PORT_RANGE:
        return True
    exact = any(
        str(attempt[key]) not in choices
        for key, choices in _LIBPQ_CHOICES.items()
        if attempt.get(key)
    )
    return exact or any(
        str(attempt[key]).lower() not in choices
        for key, choices in _LIBPQ_CHOICES_ANY_CASE.items()
        if attempt.get(key)
    )


def _port_number(port: str) -> int | None:
    """`port` as libpq reads it (`+5432` and ` 5432 ` are 5432: the re-review found
    `isdigit` calling them wrong, a start at boot then refused), None if libpq reads none."""
    return int(port) if _PORT_NUMBER.fullmatch(port) else None


# No failure as libpq sets up SSL or GSS encryption is taken for the operator's (session
# 37's fix round): one with no code and no password asked is a server down as well as a
# client's settings refused (sslmode=require against a server without SSL), since a proxy
# whose backend is down (HAProxy, a cloud SQL proxy) or a postmaster that cannot fork
# accepts and closes the connection, or answers `E`, in that same state; so it is waited for.


def _polled(pgconn: pq.abc.PGconn, deadline: float, stopped: Callable[[], bool]) -> bool:
    """Poll a connection started by `connect_start` until it is made (True), fails,
    `deadline` passes or `stopped()` says so (False, looked at every `STOP_LOOK_S`),
    waiting on its socket as libpq asks (libpq's own `connect_timeout` holds for a blocking
    connect alone)."""
    status = pq.PollingStatus.WRITING
    with selectors.DefaultSelector() as selector:
        while pgconn.status != pq.ConnStatus.BAD:
            if status == pq.PollingStatus.OK:
                return True
            left = deadline - time.monotonic()
            if status == pq.PollingStatus.FAILED or left <= 0 or stopped():
                return False
            reading = status == pq.PollingStatus.READING
            try:
                socket = pgconn.socket  # (another each host tried)
            except psycopg.OperationalError:  # none: the connection is lost
                return False
            selector.register(socket, EVENT_READ if reading else EVENT_WRITE)
            try:
                ready = selector.select(min(left, STOP_LOOK_S))
            finally:
                selector.unregister(socket)
            if ready:
                status = pq.PollingStatus(pgconn.connect_poll())
    return False


def _set_verbose_errors(pgconn: pq.abc.PGconn) -> None:
    """Make libpq write the SQLSTATE a server sends into `pgconn`'s message, where it can
    here (`_error_verbosity_setter`); where not, said once."""
    set_verbosity = _error_verbosity_setter()
    pointer: int | None = getattr(pgconn, "pgconn_ptr", None)  # (each implementation's)
    if set_verbosity is None:
        return
    if pointer is None:
        _say_refusals_not_told(f"psycopg's {pq.__impl__} PGconn shows no pointer")
        return
    set_verbosity(pointer, PQERRORS_VERBOSE)


@functools.cache
def _error_verbosity_setter() -> Callable[[int, int], int] | None:
    """libpq's `PQsetErrorVerbosity`, which psycopg (3.3) does not wrap, from the libpq that
    psycopg runs on (a `PGconn` pointer is that library's alone): the one its ctypes
    implementation loaded, else the one library named libpq mapped into this process (its
    binary and C implementations link it). None where there is not exactly one (not Linux:
    no /proc/self/maps), said once: no code is read then, and a login is taken as refused
    only where a password was asked for and none given."""
    if pq.__impl__ == "python":
        from psycopg.pq import _pq_ctypes  # (loaded already: it is the implementation)

        # the CDLL it loaded (its stub does not declare it)
        library = getattr(_pq_ctypes, "pq")  # noqa: B009
    else:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError as unread:
            _say_refusals_not_told(f"the libraries mapped not read: {unread}")
            return None
        found = {line.split(maxsplit=5)[5] for line in maps.splitlines() if "/libpq" in line}
        paths = {path for path in found if Path(path).name.startswith("libpq")}
        if len(paths) != 1:
            _say_refusals_not_told(f"{len(paths)} libpq libraries mapped, not one: {paths}")
            return None
        path = paths.pop()
        try:
            library = ctypes.CDLL(path)
        except OSError as unloaded:  # (its file replaced on disk since: "... (deleted)")
            _say_refusals_not_told(f"{path} not loaded: {unloaded}")
            return None
    setter = library.PQsetErrorVerbosity
    setter.argtypes = [ctypes.c_void_p, ctypes.c_int]
    setter.restype = ctypes.c_int
    return cast("Callable[[int, int], int]", setter)


@functools.cache
def _say_refusals_not_told(why: str) -> None:
    """Once a process for each `why`: without the SQLSTATE, a core whose login the server
    refuses waits for it as for a server down, holding the lease (docs/cluster.md)."""
    log.warning(
        "libpq's error verbosity cannot be set (%s): a login the server refuses is not told"
        " from a server down but where a password is asked for and none given; a core so"
        " refused waits for its store, holding the lease",
        why,
    )


def _reconnecting(method: Callable[_Parameters, _Result]) -> Callable[_Parameters, _Result]:
    """`method`, run once more on a new connection when the server dropped the connection
    (restarted, or the session terminated): each method is one transaction, and re-running
    it is safe, a batch whose COMMIT reply was lost included (the same batch again is a
    no-op). A server still down fails the reconnection: that error is raised."""

    @functools.wraps(method)
    def run(*args: _Parameters.args, **kwargs: _Parameters.kwargs) -> _Result:
        store = args[0]
        assert isinstance(store, PostgresLedgerStore), "a method of the store"
        try:
            return method(*args, **kwargs)
        except psycopg.OperationalError as error:
            if not store._connection.broken:
                raise  # a timeout, a lock wait: the connection is fine, the failure stands
            store._reconnect(error)
        return method(*args, **kwargs)

    return run


def _restarting(failure: ConnectFailure) -> bool:
    """Whether the server answered `failure` that it is restarting: SQLSTATE 57P03, read by
    `try_connect` (libpq gives a refused connection's psycopg error no SQLSTATE; until
    session 37 its English words were matched, so a server whose messages are translated
    had `RECONNECT_WINDOW_S` alone); where no SQLSTATE can be read, those words still
    (`_RESTARTING_REFUSAL`)."""
    if RESTARTING_STATE in failure.sqlstates:
        return True
    return _error_verbosity_setter() is None and _RESTARTING_REFUSAL in failure.message


class ReconnectWindow:
    """How long a lost connection is tried again: time is an input, so the rule is tested
    without a server. The time since the last attempt counts against `RECONNECT_WINDOW_S`
    unless the attempt found the server restarting (it answered, refusing with 57P03); the
    whole wait is bounded by `RECOVERY_WINDOW_S`."""

    def __init__(self, start_s: float) -> None:
        self.start_s = start_s
        self._last_s = start_s
        self.unreachable_s = 0.0  # the server did not answer for this long, in all

    def exhausted(self, now_s: float, *, restarting: bool) -> str:
        """After a failed attempt at `now_s`: "" to try again, else which bound ran out."""
        if not restarting:
            self.unreachable_s += now_s - self._last_s
        self._last_s = now_s
        if self.unreachable_s >= RECONNECT_WINDOW_S:
            return f"{RECONNECT_WINDOW_S:g} s"
        if now_s - self.start_s >= RECOVERY_WINDOW_S:
            return f"{RECOVERY_WINDOW_S:g} s (PostgreSQL still restarting)"
        return ""


class PostgresLedgerStore:
    """A `LedgerStore` in one PostgreSQL database, reached by `dsn`."""

    def __init__(self, dsn: str, read_only: bool = False) -> None:
        """`read_only`: every transaction read-only, and a database without the schema
        refused rather than given one (a checker's: it writes nothing, a wrong DSN too)."""
        self._dsn = dsn
        self._read_only = read_only
        self._connection = self._connect()
        # As in SqliteLedgerStore: registrations are never deleted, so ids seen stay valid.
        self._known_accounts: set[int] = set()
        self._known_assets: set[str] = set()

    def _connect(self) -> "psycopg.Connection[Any]":
        """A configured connection (the schema made if missing; `read_only`: refused if
        missing, and every transaction read-only), or a psycopg error."""
        connection = psycopg.connect(
            self._dsn,
            autocommit=True,  # transactions are begun explicitly, each with its isolation
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="tokenvenue-ledger",
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE_S,
            keepalives_interval=KEEPALIVE_INTERVAL_S,
            keepalives_count=KEEPALIVE_COUNT,
            tcp_user_timeout=TCP_USER_TIMEOUT_MS,
        )
        self._connection = connection
        try:
            connection.execute(f"SET lock_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            if self._read_only:
                connection.execute("SET default_transaction_read_only = on")
            self._configure()
        except BaseException:
            connection.close()
            raise
        return connection

    def _reconnect(self, lost: psycopg.OperationalError) -> None:
        """Replace a connection the server dropped with a new one, while the server has not
        answered for less than `RECONNECT_WINDOW_S` in all and, if it answers that it is
        restarting, for at most `RECOVERY_WINDOW_S`; else raise, saying which ran out."""
        self._connection.close()
        window = ReconnectWindow(time.monotonic())
        while True:
            said, restarting = self._reconnected()
            if not said:
                break
            exhausted = window.exhausted(time.monotonic(), restarting=restarting)
            if exhausted:
                raise psycopg.OperationalError(
                    f"the connection to PostgreSQL was lost ({_one_line(lost)}) and not"
                    f" reopened in {exhausted}: {said}"
                )
            time.sleep(RECONNECT_POLL_S)
        log.warning(
            "the ledger store's PostgreSQL connection was lost (%s): reconnected after %.1f s,"
            " retrying",
            _one_line(lost),
            time.monotonic() - window.start_s,
        )

    def _reconnected(self) -> tuple[str, bool]:
        """One attempt of `_reconnect`: ("", False) once connected again, else what failed and
        whether the server answered that it is restarting (`_restarting`)."""
        failure = try_connect(self._dsn)
        if failure is not None:
            return failure.said, _restarting(failure)
        try:
            self._connection = self._connect()
        except psycopg.OperationalError as refused:  # gone again since the check
            return _one_line(refused), False
        return "", False

    def _configure(self) -> None:
        if self._read_only:
            self._check_schema()
            return
        with self._write():
            self._execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            if self._one("SELECT to_regclass('ledger_schema') IS NULL")[0]:
                self._execute(_SCHEMA)
                return
            (version,) = self._one("SELECT version FROM ledger_schema")
            if version != SCHEMA_VERSION:
                raise LedgerStoreError(
                    f"ledger store schema version {version}; this code reads {SCHEMA_VERSION}"
                )

    def _check_schema(self) -> None:
        """A read-only store's: the schema this code reads, or `LedgerStoreError`."""
        if self._one("SELECT to_regclass('ledger_schema') IS NULL")[0]:
            raise LedgerStoreError("no ledger store in this database (no ledger_schema table)")
        (version,) = self._one("SELECT version FROM ledger_schema")
        if version != SCHEMA_VERSION:
            raise LedgerStoreError(
                f"ledger store schema version {version}; this code reads {SCHEMA_VERSION}"
            )

    # -- registrations ----------------------------------------------------------------

    @_reconnecting
    def register_asset(self, code: str, scale: int) -> bool:
        check_asset(code, scale)
        with self._write("assets"):
            row = self._maybe_one("SELECT scale FROM assets WHERE code = %s", (code,))
            if not asset_is_new(code, scale, None if row is None else row[0]):
                return False
            self._execute("INSERT INTO assets (code, scale) VALUES (%s, %s)", (code, scale))
        return True

    @_reconnecting
    def register_account(self, account_id: int, name: str) -> bool:
        check_account(account_id, name)
        with self._write("accounts"):
            query = "SELECT name FROM accounts WHERE account_id = %s"
            row = self._maybe_one(query, (account_id,))
            if not account_is_new(account_id, name, None if row is None else row[0]):
                return False
            self._execute(
                "INSERT INTO accounts (account_id, name) VALUES (%s, %s)", (account_id, name)
            )
        return True

    @_reconnecting
    def assets(self) -> dict[str, int]:
        rows = self._all('SELECT code, scale FROM assets ORDER BY code COLLATE "C"')
        return {code: scale for code, scale in rows}

    @_reconnecting
    def accounts(self) -> dict[int, str]:
        rows = self._all("SELECT account_id, name FROM accounts ORDER BY account_id")
        return {account_id: name for account_id, name in rows}

    # -- reserves -------------------------------------------------------------------------

    @_reconnecting
    def record_attestation(self, asset: str, amount: int, as_of_us: int) -> bool:
        check_attestation(asset, amount)
        with self._write("attestations"):
            row = self._maybe_one(
                "SELECT amount FROM attestations WHERE asset = %s AND as_of_us = %s",
                (asset, as_of_us),
            )
            if not attestation_is_new(asset, amount, as_of_us, None if row is None else row[0]):
                return False
            self._execute(
                "INSERT INTO attestations (asset, as_of_us, amount) VALUES (%s, %s, %s)",
                (asset, as_of_us, amount),
            )
        return True

    @_reconnecting
    def attestations(self) -> dict[str, tuple[int, int]]:
        rows = self._all(
            "SELECT DISTINCT ON (asset) asset, amount, as_of_us FROM attestations"
            " ORDER BY asset, as_of_us DESC"
        )
        return {asset: (amount, as_of) for asset, amount, as_of in sorted(rows)}

    # -- transfers ------------------------------------------------------------------------

    @_reconnecting
    def append_batch(self, transfers: Sequence[Transfer]) -> bool:
        rows = batch_rows(transfers)
        first_id = rows[0][0]
        last_id = rows[-1][0]
        with self._write("batches"):  # the lock first: the head read next stays the head
            head = self._maybe_one(_SELECT_HEAD)
            batch_no, stored_last_id, prev_hash = head if head else (0, 0, GENESIS_HASH)
            if last_id <= stored_last_id:
                return self._check_reapplied(rows, first_id, last_id)
            if first_id != stored_last_id + 1:
                raise sequence_problem(first_id, last_id, stored_last_id)
            self._check_registered(rows)
            digest = batch_hash(bytes(prev_hash), rows)
            self._copy_transfers(rows, first_id, last_id)
            self._execute(_INSERT_BATCH, (batch_no + 1, first_id, last_id, prev_hash, digest))
        return True

    def _copy_transfers(self, rows: list[TransferRow], first_id: int, last_id: int) -> None:
        """COPY, not INSERTs: one round trip for the whole batch; the checks still apply."""
        try:
            with self._connection.cursor() as cursor, cursor.copy(_COPY_TRANSFERS) as copy:
                for row in rows:
                    copy.write_row(row)
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as error:
            why = error.diag.message_primary or str(error)
            raise BatchRejectedError(f"batch {first_id}..{last_id}: {why}") from None

    def _check_reapplied(self, rows: list[TransferRow], first_id: int, last_id: int) -> bool:
        if self._all(_SELECT_RANGE, (first_id, last_id)) != rows:
            raise BatchSequenceError(
                f"batch {first_id}..{last_id} is already stored with different contents"
            )
        return False

    def _check_registered(self, rows: list[TransferRow]) -> None:
        accounts = {row[2] for row in rows}
        accounts.update(row[3] for row in rows)
        assets = {row[4] for row in rows}
        missing_accounts = accounts - self._known_accounts
        missing_assets = assets - self._known_assets
        if missing_accounts:
            found_accounts = self._present("accounts", "account_id", missing_accounts)
            self._known_accounts |= found_accounts
            missing_accounts -= found_accounts
        if missing_assets:
            found_assets = self._present("assets", "code", missing_assets)
            self._known_assets |= found_assets
            missing_assets -= found_assets
        if missing_accounts or missing_assets:
            first_id, last_id = rows[0][0], rows[-1][0]
            raise BatchRejectedError(
                f"batch {first_id}..{last_id} names unregistered accounts"
                f" {sorted(missing_accounts)} and assets {sorted(missing_assets)}"
            )

    def _present(self, table: str, column: str, keys: set[_Key]) -> set[_Key]:
        query = f"SELECT {column} FROM {table} WHERE {column} = ANY(%s)"
        return {row[0] for row in self._all(query, (sorted(keys),))}

    @_reconnecting
    def last_transfer_id(self) -> int:
        head = self._maybe_one(_SELECT_HEAD)
        return int(head[1]) if head else 0

    @_reconnecting
    def head_hash(self) -> bytes:
        head = self._maybe_one(_SELECT_HEAD)
        return bytes(head[2]) if head else GENESIS_HASH

    def iter_transfers(self, after_id: int = 0) -> Iterator[Transfer]:
        # Paged, so no statement stays open across the caller's own appends.
        while True:
            page = self._page(after_id)
            for row in page:
                yield transfer_of(row)
            if len(page) < ITERATION_PAGE_TRANSFERS:
                return
            after_id = page[-1][0]

    @_reconnecting
    def _page(self, after_id: int) -> list[TransferRow]:
        return self._all(_SELECT_PAGE, (after_id, ITERATION_PAGE_TRANSFERS))

    @_reconnecting
    def balances(self) -> dict[tuple[int, str], int]:
        with self._snapshot():
            return self._balances()

    def _balances(self) -> dict[tuple[int, str], int]:
        # SUM of BIGINT is NUMERIC (exact, never overflows): back to int here.
        rows = self._all(_SELECT_BALANCES + ' ORDER BY account_id, asset COLLATE "C"')
        return {(account_id, asset): int(amount) for account_id, asset, amount in rows}

    @_reconnecting
    def sum_through(self, transfer_id: int) -> SummedTransfers:
        with self._snapshot():
            rows = self._all(_SELECT_BALANCES_THROUGH, (transfer_id, transfer_id))
            (last_id,) = self._one(_SELECT_LAST_THROUGH, (transfer_id,))
            known = list(KNOWN_KINDS)
            unknown = self._maybe_one(_SELECT_UNKNOWN_KIND_THROUGH, (transfer_id, known))
        balances = {(account_id, asset): int(amount) for account_id, asset, amount in rows}
        return SummedTransfers(balances, last_id or 0, None if unknown is None else tuple(unknown))

    @_reconnecting
    def verify(self) -> list[str]:
        with self._snapshot():
            problems = self._chain_problems()
            problems += [
                f"transfers name an unregistered account {account_id}"
                for (account_id,) in self._all(_SELECT_UNREGISTERED_ACCOUNTS)
            ]
            problems += [
                f"transfers name an unregistered asset {asset}"
                for asset in sorted(row[0] for row in self._all(_SELECT_UNREGISTERED_ASSETS))
            ]
            problems += balance_problems(self._balances())
        return problems

    def _chain_problems(self) -> list[str]:
        batches = [
            (batch_no, first_id, last_id, bytes(prev_hash), bytes(digest))
            for batch_no, first_id, last_id, prev_hash, digest in self._all(
                "SELECT batch_no, first_transfer_id, last_transfer_id, prev_hash, hash"
                " FROM batches ORDER BY batch_no"
            )
        ]
        return chain_problems(
            batches,
            lambda first_id, last_id: self._all(_SELECT_RANGE, (first_id, last_id)),
            lambda first_id: int(
                self._one("SELECT COUNT(*) FROM transfers WHERE transfer_id >= %s", (first_id,))[0]
            ),
        )

    def close(self) -> None:
        self._connection.close()

    # -- statements and transactions --------------------------------------------------------

    def _execute(self, query: str, parameters: Sequence[Any] = ()) -> None:
        self._connection.execute(query, parameters or None)

    def _all(self, query: str, parameters: Sequence[Any] = ()) -> list[Any]:
        return self._connection.execute(query, parameters or None).fetchall()

    def _maybe_one(self, query: str, parameters: Sequence[Any] = ()) -> Any:
        return self._connection.execute(query, parameters or None).fetchone()

    def _one(self, query: str, parameters: Sequence[Any] = ()) -> Any:
        row = self._maybe_one(query, parameters)
        assert row is not None, f"{query!r} returned no row"
        return row

    def _write(self, table: str | None = None) -> "_Transaction":
        """A read-committed transaction that first takes `table`'s lock in EXCLUSIVE mode:
        writers of that table queue behind it, readers do not; every statement after the
        lock sees what the writers before it committed."""
        lock = f"LOCK TABLE {table} IN EXCLUSIVE MODE" if table else None
        return _Transaction(self._connection, "BEGIN ISOLATION LEVEL READ COMMITTED", lock)

    def _snapshot(self) -> "_Transaction":
        return _Transaction(
            self._connection, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", None
        )


class _Transaction:
    """Commit on success, roll back on any exception, so a refusal leaves nothing behind."""

    def __init__(self, connection: psycopg.Connection[Any], begin: str, first: str | None) -> None:
        self._connection = connection
        self._begin = begin
        self._first = first

    def __enter__(self) -> None:
        self._connection.execute(self._begin)
        first = self._first
        if first is not None:
            self._run(lambda: self._connection.execute(first))

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if error_type is None:
            self._run(lambda: self._connection.execute("COMMIT"))
        else:
            self._roll_back()

    def _run(self, statement: Callable[[], object]) -> None:
        try:
            statement()
        except BaseException:
            self._roll_back()
            raise

    def _roll_back(self) -> None:
        # A broken connection has no transaction left to end.
        status = self._connection.info.transaction_status
        if status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
            self._connection.execute("ROLLBACK")
