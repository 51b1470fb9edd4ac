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


async def _transport_caught(exception: BaseException) -> dict[str, Any]:
    """What uvloop does with an exception raised in a subprocess pipe's callback."""
    loop = asyncio.get_running_loop()
    context = {"message": "Fatal error on transport ReadUnixTransport", "exception": exception}
    loop.call_exception_handler(context)
    return {"ran": True}


def test_a_second_sigint_caught_by_a_transport_is_not_logged_as_a_fatal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ctrl-C twice (or `timeout -s INT`, to the process and its group) printed a traceback:
    the second SIGINT's KeyboardInterrupt, raised in a client pipe's eof_received, logged by
    uvloop as "Fatal error on transport" while the first had already stopped the run."""
    assert server_process.run_async(_transport_caught(KeyboardInterrupt())) == {"ran": True}
    assert "Fatal error on transport" not in caplog.text
    # any other exception a transport catches is still logged, as before
    assert server_process.run_async(_transport_caught(ValueError("bad"))) == {"ran": True}
    assert "Fatal error on transport" in caplog.text and "ValueError: bad" in caplog.text
