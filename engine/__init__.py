"""The matching engine: instruments, order books and the deterministic `Venue` state machine.

Owns commands in, events out: price-time-priority matching per instrument, reject reasons,
invariant checks and a state hash. Leaves the clock, journals, snapshots and persistence to
the core (`core/`), the network to the gateway, and balances to `settlement`. Pure: no I/O,
no clock, no randomness.
"""
