"""bench.server_process: what the websocket benchmarks share around their run."""

import asyncio
import os
import signal
from typing import Any

import pytest

from bench import server_process

SIGINT_WAIT_S = 5.0  # a SIGINT that interrupts does so at once; one ignored ends this wait


async def _interrupt_self() -> dict[str, Any]:
    """Send this process SIGINT, then wait for it to interrupt the run (bounded)."""
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.sleep(SIGINT_WAIT_S)
    return {"interrupted": False}


def test_sigint_interrupts_a_run_started_with_it_ignored() -> None:
    """A script's `&` job starts with SIGINT ignored; its server and clients stop on the
    group's SIGINT all the same, so the run must too (it went on, and failed with status 1)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt):
            server_process.run_async(_interrupt_self())
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # as it was, after the run
    finally:
        signal.signal(signal.SIGINT, previous)
