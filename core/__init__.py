"""The core role: the sequencer that puts commands in one total order, the journal that makes
them durable, snapshots and recovery, the ledger writer and its store thread, and the venue's
configuration. One active core per venue; it drives the pure `engine` and `settlement`.
"""
