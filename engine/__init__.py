"""The matching engine: instruments, order books and the deterministic `Venue` state machine.

Owns commands in, events out: price-time-priority matching per instrument, reject reasons,
invariant checks and a state hash. Leaves the network, clocks, journals and persistence to
the gateway, and balances to `settlement`. Pure: no I/O, no clock, no randomness.
"""
