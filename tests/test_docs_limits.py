"""docs/protocol.md §2.5's limits are the code's: each row's numbers are the constants that
enforce it (as the page writes them, `65,536`), so a changed limit changes its row."""

import re

import pytest

from core.config import LimitsSection
from engine.instrument import FEE_BPS_MAX, SYMBOL_LENGTH_MAX
from engine.operations import CL_OP_ID_LENGTH_MAX
from engine.units import SCALE_MAX
from engine.venue import CL_ORD_ID_LENGTH_MAX, VenueConfig
from gateway import auth, limits, sessions, wire
from gateway.tape import TRADES_RECENT_MAX
from settlement.ledger import ASSET_CODE_LENGTH_MAX
from tests.conftest import ROOT

TABLE = (ROOT / "docs" / "protocol.md").read_text().split("### 2.5 Limits", 1)[1].split("\n#", 1)[0]
DEFAULTS = LimitsSection()
MIB = 2**20  # the page writes bytes of this size as MiB

# the start of a row's first cell → the numbers its row must state
ROWS: dict[str, tuple[int, ...]] = {
    "frame size": (wire.MESSAGE_BYTES_MAX, limits.FRAME_BYTES_HARD_MAX),
    "logon": (limits.LOGON_TIMEOUT_S,),
    "connections per account": (
        limits.CONNECTIONS_PER_ACCOUNT_MAX,
        limits.CONNECTIONS_PER_ACCOUNT_MAX - limits.CONNECTIONS_KEPT_FOR_TRADING,
        limits.CONNECTIONS_KEPT_FOR_TRADING,
    ),
    "open connections per client IP": (DEFAULTS.connections_per_ip_max,),
    "open connections in all": (DEFAULTS.connections_max,),
    "public open connections": (
        DEFAULTS.connections_max * (100 - DEFAULTS.connections_reserved_pct) // 100,
        DEFAULTS.connections_reserved_pct,
    ),
    "connections per client IP waiting": (DEFAULTS.pending_per_ip_max,),
    "REST's unsigned requests": (
        DEFAULTS.unsigned_rate_per_ip_per_s,
        2 * DEFAULTS.unsigned_rate_per_ip_per_s,
    ),
    "`recv_window`": (auth.RECV_WINDOW_MS_MAX, auth.RECV_WINDOW_MS_DEFAULT),
    "`nonce`": (auth.NONCE_LENGTH_MAX, auth.NONCES_PER_KEY_MAX),
    "web page files": (limits.PAGE_FILES_BURST, limits.PAGE_FILES_RATE_PER_S),
    "`api_key`": (auth.KEY_LENGTH_MAX,),
    "symbol / asset code": (SYMBOL_LENGTH_MAX, ASSET_CODE_LENGTH_MAX),
    "`cl_ord_id`": (CL_ORD_ID_LENGTH_MAX,),
    "admin `cl_op_id`": (CL_OP_ID_LENGTH_MAX,),
    "`quote_set`": (wire.NAME_LENGTH_MAX,),
    "account `name`": (wire.NAME_LENGTH_MAX,),
    "`order.batch`": (wire.BATCH_OPS_MAX,),
    "`quote.mass`": (wire.QUOTES_MAX,),
    "`subscribe`": (wire.SYMBOLS_PER_REQUEST_MAX,),
    "subscriptions per connection": (limits.SUBSCRIPTIONS_PER_CONNECTION_MAX,),
    "book `depth`": (wire.BOOK_DEPTH_MAX,),
    "`fills.limit`": (wire.FILLS_LIMIT_MAX,),
    "`orders.history.limit`": (wire.ORDERS_HISTORY_LIMIT_MAX,),
    "`orders.cancel_after.timeout_ms`": (wire.CANCEL_AFTER_MS_MAX,),
    "open orders per account": (VenueConfig().open_orders_per_account_max,),
    "private events retained": (
        limits.PRIVATE_HISTORY_EVENTS_MAX,
        limits.PRIVATE_HISTORY_EVENTS_TOTAL_MAX,
    ),
    "closed orders retained per account": (limits.CLOSED_ORDERS_PER_ACCOUNT_MAX,),
    "closed orders retained across": (limits.CLOSED_ORDERS_TOTAL_MAX,),
    "outgoing queue": (limits.SEND_QUEUE_MESSAGES_MAX, limits.SEND_QUEUE_BYTES_MAX // MIB),
    "packed frame": (sessions.WRITE_BATCH_MAX, sessions.PACK_BYTES_MAX // MIB),
    "heartbeat": (limits.HEARTBEAT_INTERVAL_S,),
    "`trades` snapshot": (TRADES_RECENT_MAX,),
    "admin: fee": (FEE_BPS_MAX,),
    "admin: asset scale": (SCALE_MAX,),
}


def row(start: str) -> str:
    found = [line for line in TABLE.splitlines() if line.startswith(f"| {start}")]
    assert len(found) == 1, f"§2.5 has {len(found)} rows starting {start!r}"
    return found[0]


@pytest.mark.parametrize("start", ROWS)
def test_each_limit_row_states_the_codes_numbers(start: str) -> None:
    written = {int(number.replace(",", "")) for number in re.findall(r"\d[\d,]*", row(start))}
    missing = [number for number in ROWS[start] if number not in written]
    assert not missing, f"§2.5 {start!r}: the code's {missing} not in {row(start)!r}"


def test_every_row_is_checked() -> None:
    rows = [line for line in TABLE.splitlines() if line.startswith("| ") and "---" not in line]
    unchecked = [line for line in rows[1:] if not any(line.startswith(f"| {s}") for s in ROWS)]
    assert not unchecked, f"add these §2.5 rows to ROWS: {unchecked}"
