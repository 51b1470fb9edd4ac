"""Why the ledger did nothing: the `Refused` every ledger operation returns instead of raising.

Its own module so that each part of the ledger (`settlement.ledger`, `settlement.withdrawals`)
returns the same one; `settlement.ledger` re-exports it, where callers import it from.
"""

import msgspec


class Refused(msgspec.Struct, frozen=True, gc=False):
    """Why the ledger did nothing. `reason` is a stable upper-case name (an error code name)."""

    reason: str
    detail: str
