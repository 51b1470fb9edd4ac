"""The engine's vocabularies: side, order type, time in force, self-trade prevention,
order status, cancel reason, liquidity, instrument kind and status.

String enums so that they are readable in events and on the wire, and compare by identity on
the hot path. Values are stable: they appear in journals and in the protocol.
"""

from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(StrEnum):
    GTC = "gtc"  # good till canceled
    IOC = "ioc"  # immediate or cancel: the unfilled rest is canceled
    FOK = "fok"  # fill or kill: all at once or rejected, the book untouched
    GTD = "gtd"  # good till date: expires at `expire_at_us`


class SelfTradePrevention(StrEnum):
    """What happens when a taker would trade with a resting order of its own account."""

    EXPIRE_TAKER = "expire_taker"
    EXPIRE_MAKER = "expire_maker"
    EXPIRE_BOTH = "expire_both"
    NONE = "none"


class OrderStatus(StrEnum):
    """An order's state after an event, as in a FIX execution report."""

    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


class CancelReason(StrEnum):
    """Why an order left the book without filling completely."""

    USER = "user"
    COD = "cod"
    DMS = "dms"
    MASS_CANCEL = "mass_cancel"
    IOC_REST = "ioc_rest"
    FOK_UNFILLED = "fok_unfilled"
    POST_ONLY = "post_only"
    STP = "stp"
    HALT = "halt"
    MATURITY = "maturity"
    ADMIN = "admin"
    GTD = "gtd"  # reached its expire_at time
    CORPORATE_ACTION = "corporate_action"  # a split left it below the minimum or unaffordable


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


class InstrumentKind(StrEnum):
    EQUITY = "equity"
    TBILL = "tbill"


class InstrumentStatus(StrEnum):
    OPEN = "open"
    HALTED = "halted"  # no new orders or amends; cancels allowed
    CANCEL_ONLY = "cancel_only"
    POST_ONLY = "post_only"  # only post-only orders; nothing takes
    DELISTED = "delisted"  # terminal: every open order is canceled
