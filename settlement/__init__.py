"""The double-entry ledger: balances, holds and atomic delivery-versus-payment settlement.

Pure except for its store module. Filled in by the settlement issue; the engine composes it.
"""
