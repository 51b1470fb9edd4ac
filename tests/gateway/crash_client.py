"""A load client for the crash test, run as its own process: trades until it is killed.

Logs on as the demo market maker (sells resting asks) and the demo taker (crosses them),
and appends one JSON line per acknowledgement and per fill it receives to a log file,
flushed at once, so the test knows exactly what the venue acknowledged before it died.
"""

import asyncio
import json
import random
import sys
from typing import Any

from client.sdk import VenueClient, VenueError
from tests.conftest import KEYS

SYMBOL = "AAPLx-USD"


async def main(url: str, log_path: str, seed: int) -> None:
    rng = random.Random(seed)
    with open(log_path, "a", buffering=1) as log:

        def record(kind: str, **fields: Any) -> None:
            log.write(json.dumps({"kind": kind, **fields}) + "\n")

        async with VenueClient(url) as maker, VenueClient(url) as taker:
            await maker.logon(*KEYS["alpha"])
            await taker.logon(*KEYS["taker"])
            await maker.subscribe_account()
            await taker.subscribe_account()
            readers = [
                asyncio.create_task(watch(c, name, record))
                for c, name in ((maker, "alpha"), (taker, "taker"))
            ]
            while True:
                price = f"187.{rng.randint(20, 40):02d}"
                try:
                    ack = await maker.place(SYMBOL, "sell", "0.01", price)
                    record("ack", account="alpha", order_id=ack["order_id"], seq=ack["seq"])
                    ack = await taker.place(SYMBOL, "buy", "0.01", "187.40", tif="ioc")
                    record("ack", account="taker", order_id=ack["order_id"], seq=ack["seq"])
                except VenueError as refused:
                    record("refused", name=refused.name)
            del readers


async def watch(client: VenueClient, name: str, record: Any) -> None:
    while True:
        push = await client.pushes.get()
        data = push.get("data", {})
        if push.get("type") == "exec" and data.get("exec_type") == "trade":
            record(
                "fill",
                account=name,
                seq=push["seq"],
                trade_id=data["trade_id"],
                order_id=data["order_id"],
                qty=data["last_qty"],
            )
        elif push.get("ch") == "account" and "seq" in push:
            record("seen", account=name, seq=push["seq"])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
