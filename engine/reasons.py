"""The stable error codes of the venue and the order in which the engine checks them.

One table for the whole process: the gateway answers malformed input with the 1xxx-3xxx
codes, the engine refuses business commands with the rest and with three of those
(`BAD_PARAM` for a command's shape or an operator's parameters, `NOT_ELIGIBLE`,
`TOO_MANY_OPEN_ORDERS`). Codes are the range base plus the position in docs/protocol.md's
list, §11.1 (so `POST_ONLY_WOULD_TAKE` is 4006); new names are only appended. The
`*_PRECEDENCE` tuples list the reasons in the order each command checks them: when several
apply, the first listed is the one reported.
"""

from enum import IntEnum


class ErrorCode(IntEnum):
    # 1xxx protocol
    BAD_JSON = 1000
    UNKNOWN_METHOD = 1001
    MISSING_PARAM = 1002
    BAD_PARAM = 1003
    BAD_PRECISION = 1004
    MESSAGE_TOO_BIG = 1005
    # 2xxx auth
    NOT_AUTHENTICATED = 2000
    BAD_SIGNATURE = 2001
    TIMESTAMP_OUT_OF_WINDOW = 2002
    NONCE_REUSED = 2003
    PERMISSION_DENIED = 2004
    NOT_ELIGIBLE = 2005
    # 3xxx limits
    RATE_LIMITED = 3000
    TOO_MANY_OPEN_ORDERS = 3001
    TOO_MANY_SUBSCRIPTIONS = 3002
    # 4xxx order reject
    UNKNOWN_SYMBOL = 4000
    INVALID_PRICE_TICK = 4001
    INVALID_QTY_STEP = 4002
    BELOW_MIN_QTY = 4003
    BELOW_MIN_NOTIONAL = 4004
    INSUFFICIENT_BALANCE = 4005
    POST_ONLY_WOULD_TAKE = 4006
    FOK_NOT_FILLABLE = 4007
    DUPLICATE_CL_ORD_ID = 4008
    PRICE_BAND = 4009
    MARKET_NO_LIQUIDITY = 4010
    COD_REQUIRED = 4011
    INVALID_EXPIRE_AT = 4012  # appended: a gtd order whose expire_at is not in the future
    ABOVE_MAX_QTY = 4013  # appended: qty above the instrument's per-order cap
    ABOVE_MAX_NOTIONAL = 4014  # appended: notional above the instrument's per-order cap
    # appended: what the order could trade in all passes what the venue accounts in 64 bits
    NOTIONAL_OUT_OF_RANGE = 4015
    # 5xxx order state
    UNKNOWN_ORDER = 5000
    ORDER_NOT_OPEN = 5001
    AMEND_REJECTED = 5002
    # 6xxx market state
    INSTRUMENT_HALTED = 6000
    CANCEL_ONLY = 6001
    POST_ONLY_MODE = 6002
    INSTRUMENT_DELISTED = 6003  # appended: the instrument has been delisted for good
    INSTRUMENT_EXISTS = 6004  # appended: listing a symbol that is already listed
    INSTRUMENT_NOT_HALTED = 6005  # appended: a split needs its markets halted or cancel-only
    MATURITY_PASSED = 6006  # appended: listing a T-bill whose maturity is not in the future
    INSTRUMENT_MATURED = 6007  # appended: the T-bill has matured (redeemed, never trading again)
    # appended: a T-bill's reference price above par or below `tbill.PRICE_MIN` per 100 face;
    # refused where the price enters (the config, admin.*), never by the engine
    BILL_PRICE_OUT_OF_RANGE = 6008
    # 7xxx ledger (appended: the protocol's own list has no ledger range yet)
    UNKNOWN_ASSET = 7000
    UNKNOWN_ACCOUNT = 7001
    RESERVES_STALE = 7002  # no attestation fresh enough to mint against
    RESERVES_EXCEEDED = 7003  # supply after the mint would exceed the attested reserves
    UNKNOWN_WITHDRAWAL = 7004
    ACCOUNT_EXISTS = 7005
    ASSET_EXISTS = 7006
    ASSET_MATURED = 7007  # appended: the asset is a matured T-bill's token: no reserves, no mint
    # appended: the mint would let a supply pass what the venue accounts (bills' par counted)
    SUPPLY_OUT_OF_RANGE = 7008
    # appended: an operator command's `cl_op_id` names an earlier command that asked otherwise
    CL_OP_ID_REUSED = 7009
    # appended: a confirm or void of a withdrawal that was confirmed (or voided) before
    WITHDRAWAL_ALREADY_CONFIRMED = 7010
    WITHDRAWAL_ALREADY_VOIDED = 7011
    # 9xxx server
    INTERNAL = 9000
    SHUTTING_DOWN = 9001
    QUOTE_PLACE_PENDING = 9002  # appended: a cluster gateway's quote still on its way to the core
    OUTCOME_UNKNOWN = 9003  # appended: a cluster gateway lost its lease before the outcome came
    NONCE_UNCHECKED = 9004  # appended: a cluster gateway could not claim a nonce cluster-wide
    # appended: a REST request on a connection past a cap on open connections (per IP, total)
    TOO_MANY_CONNECTIONS = 9005
    # appended: a cluster's active core could not read the command (a gateway of a later build)
    UNSUPPORTED_COMMAND = 9006


E = ErrorCode

# A place with `once` whose cl_ord_id the venue remembers (`engine.once`) is refused
# DUPLICATE_CL_ORD_ID right after BAD_PARAM, before the rest: a retry learns its first ran,
# not a reason that came up since (a halt, an amend that took the cl_ord_id) or one it passed.
PLACE_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,
    E.UNKNOWN_SYMBOL,
    E.INSTRUMENT_DELISTED,
    E.INSTRUMENT_HALTED,
    E.CANCEL_ONLY,
    E.POST_ONLY_MODE,
    E.NOT_ELIGIBLE,
    E.INVALID_EXPIRE_AT,
    E.DUPLICATE_CL_ORD_ID,
    E.INVALID_PRICE_TICK,
    E.INVALID_QTY_STEP,
    E.BELOW_MIN_QTY,
    E.ABOVE_MAX_QTY,
    E.PRICE_BAND,
    E.BELOW_MIN_NOTIONAL,
    E.ABOVE_MAX_NOTIONAL,
    E.NOTIONAL_OUT_OF_RANGE,  # at its own price (a market order: the band's high, quote_qty)
    E.TOO_MANY_OPEN_ORDERS,
    E.INSUFFICIENT_BALANCE,
    E.POST_ONLY_WOULD_TAKE,
    E.NOTIONAL_OUT_OF_RANGE,  # a sell, at the bids it would take
    E.FOK_NOT_FILLABLE,
    E.MARKET_NO_LIQUIDITY,
)

CANCEL_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,
    E.UNKNOWN_ORDER,
    E.ORDER_NOT_OPEN,
)

DEPOSIT_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,
    E.UNKNOWN_ACCOUNT,
    E.UNKNOWN_ASSET,
    E.ASSET_MATURED,
    E.RESERVES_STALE,
    E.RESERVES_EXCEEDED,
    E.SUPPLY_OUT_OF_RANGE,  # the asset's, or its cash's once its bills pay par
)

# Sweeping the venue's income (`SweepVenueAccount`): BAD_PARAM for the amount or a source
# that is no sweepable venue account, then as a deposit's, then the venue balance short.
SWEEP_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,
    E.UNKNOWN_ACCOUNT,
    E.UNKNOWN_ASSET,
    E.INSUFFICIENT_BALANCE,
)

WITHDRAWAL_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,
    E.UNKNOWN_ACCOUNT,
    E.UNKNOWN_ASSET,
    E.INSUFFICIENT_BALANCE,
)

AMEND_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,
    E.UNKNOWN_ORDER,
    E.ORDER_NOT_OPEN,
    E.INSTRUMENT_HALTED,
    E.CANCEL_ONLY,
    E.AMEND_REJECTED,
    E.DUPLICATE_CL_ORD_ID,
    E.INVALID_PRICE_TICK,
    E.INVALID_QTY_STEP,
    E.BELOW_MIN_QTY,
    E.ABOVE_MAX_QTY,
    E.PRICE_BAND,
    E.BELOW_MIN_NOTIONAL,
    E.ABOVE_MAX_NOTIONAL,
    E.NOTIONAL_OUT_OF_RANGE,  # what it traded, plus the rest at its price (or the bids it takes)
    E.INSUFFICIENT_BALANCE,
    E.POST_ONLY_MODE,
    E.POST_ONLY_WOULD_TAKE,
)

CANCEL_ALL_PRECEDENCE: tuple[ErrorCode, ...] = (E.BAD_PARAM, E.UNKNOWN_SYMBOL)

ARM_DEAD_MAN_PRECEDENCE: tuple[ErrorCode, ...] = (E.BAD_PARAM,)  # the account or the timeout

# BAD_PARAM: `since_us` negative or after the command's own time.
SHIFT_DEAD_MAN_DEADLINES_PRECEDENCE: tuple[ErrorCode, ...] = (E.BAD_PARAM,)

# The account, or the ids: more than an account's open orders, or not ascending each once.
SET_CANCEL_ON_DISCONNECT_PRECEDENCE: tuple[ErrorCode, ...] = (E.BAD_PARAM,)

# BAD_PARAM: the spec's own checks; with a ledger, its refusals (assets, a shared bill, the
# par of tokens out) come after INSTRUMENT_EXISTS, still BAD_PARAM (docs/engine.md).
LIST_INSTRUMENT_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,
    E.INSTRUMENT_EXISTS,
    E.MATURITY_PASSED,
)

SET_STATUS_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,
    E.UNKNOWN_SYMBOL,
    E.INSTRUMENT_DELISTED,
    E.INSTRUMENT_MATURED,
)

# On the wire, BILL_PRICE_OUT_OF_RANGE comes between UNKNOWN_SYMBOL and INSTRUMENT_DELISTED:
# checked as the price enters (`engine.instrument.bill_price_problem`), not here.
SET_REFERENCE_PRICE_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,
    E.UNKNOWN_SYMBOL,
    E.INSTRUMENT_DELISTED,
    E.INVALID_PRICE_TICK,
)

PAY_DIVIDEND_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,
    E.UNKNOWN_SYMBOL,
    E.UNKNOWN_ACCOUNT,
    E.BAD_PARAM,  # pays no holder a cash unit (checked entries only: `paid_checked`)
    E.INSUFFICIENT_BALANCE,
)

SPLIT_SHARES_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,  # the ratio, then not an equity, then the asset is also a quote
    E.UNKNOWN_SYMBOL,
    E.INSTRUMENT_NOT_HALTED,
    E.BAD_PARAM,  # the supply or a reference price would pass the maximum
    E.UNKNOWN_ACCOUNT,  # the payer
    E.BAD_PARAM,  # cash in lieu due and no payer named
    E.INSUFFICIENT_BALANCE,  # the payer's cash
    E.BAD_PARAM,  # rescaled sells or withdrawals that would pass a holding
)

# BAD_PARAM first for an as_of sent in milliseconds or in the future, then as the ledger checks.
ATTEST_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,  # as_of in milliseconds or in the future
    E.UNKNOWN_ASSET,
    E.ASSET_MATURED,  # a matured bill's token takes no statement, whatever it says
    E.BAD_PARAM,  # the amount, or an as_of before the latest statement or split
)

# Maturing a bill now: a delisted bill still redeems (its holders are paid regardless).
MATURE_INSTRUMENT_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.UNKNOWN_SYMBOL,
    E.BAD_PARAM,  # not a T-bill
    E.INSTRUMENT_MATURED,
)

SET_ORDER_CAPS_PRECEDENCE: tuple[ErrorCode, ...] = (
    E.BAD_PARAM,
    E.UNKNOWN_SYMBOL,
    E.INSTRUMENT_DELISTED,
)
