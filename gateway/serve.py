"""`venue serve`: run the venue on uvloop until SIGTERM or SIGINT, then shut down cleanly.

Prints where to connect and the configured demo keys, so a newcomer can log on at once.
"""

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from gateway import config as venue_config
from gateway.journal import JournalError
from gateway.server import VenueServer


def run(config_path: Path, host: str | None, port: int | None, data_dir: Path | None) -> int:
    config = venue_config.load(config_path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform: plain asyncio then
        runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(_serve(config, host, port, data_dir))
    except JournalError as refused:  # corruption before the tail: never guess, say where
        print(f"venue: cannot start: {refused}", file=sys.stderr)
        return 1
    return 0


async def _serve(
    config: venue_config.VenueConfig, host: str | None, port: int | None, data_dir: Path | None
) -> None:
    host = host or config.venue.host
    port = config.venue.port if port is None else port
    server = VenueServer(config, data_dir or Path(config.venue.data_dir))
    bound = await server.start(host, port)
    print(f"tokenvenue listening: ws://{host}:{bound}/ws/trade  ws://{host}:{bound}/ws/public")
    for key in config.api_keys:
        print(f"  api key {key.key:<16} secret {key.secret:<24} scopes {','.join(key.scopes)}")
    print("stop with Ctrl-C (SIGINT) or SIGTERM", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop()
    print("tokenvenue stopped cleanly", flush=True)
