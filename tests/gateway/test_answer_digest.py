"""The answers of a long seeded request sequence are main's, byte for byte (times masked).

A real `VenueServer` (started on 127.0.0.1, real journal and store files) is fed masked client
frames through its own connection objects (`bench.ingress_bench.Client`), as the ingress bench
feeds it: places, cancels, amends, batches with good and bad ops, `quote.mass` requotes and
pulls, cancel-alls of quote sets, malformed and refused requests and queries, all on four
accounts. Every answer (a frame with a top-level `id`) written back is hashed in order, with
only the clock's values masked. The pinned digest was made by running this module as a script
in a checkout of main (`PYTHONPATH=<checkout> python tests/gateway/test_answer_digest.py`):
a change on the request path that alters any answer's bytes, their order or their seqs fails
here.
"""

import hashlib
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from bench import ingress_bench, server_process
from core import config as venue_config
from gateway.server import VenueServer
from tests.sample_config import SAMPLE_CONFIG

# Re-pinned in session 18: a `quote.mass` or cancel-all of a quote set that finds nothing to
# do is answered behind the answers owed (it came ahead of them). The same 1,506 answers, byte
# for byte; 15 positions differ, each a `{"canceled":0}` now after the earlier request's answer
# (was main 5fe23d4's "aafc80af0ac50491b3e1e4d12db779a36cf054282e6face0f8d503a1fd7784c1").
# Re-pinned in session 22: `orders.open` and `order.status` show `quote_set` and `expire_at`.
# The same 1,506 answers; the 34 that differ are those queries' answers, equal to the old
# ones with the two fields removed (was "933363e373a295d039cc8653de76e412743963e5c9550a848f2
# 63d8b39140838").
# Re-pinned in session 23: a new journal's first record is the venue's reserve staleness
# bound (`SetReserveStaleness`, 8043b8a), so every command's seq is one more. The same 1,506
# answers; with each `seq` less one, all equal to the old ones (was "23954e7a3c61508e805c9cf
# 489c2e02547fe35734189ff1fc1ed3077e5a08100").
# Re-pinned in session 26: `DUPLICATE_CL_ORD_ID`'s `data` names the order's status beside its
# id (the `once` place, docs/protocol.md §3). The same 1,506 answers; the 5 that differ are
# those refusals, equal to the old ones with `"status"` removed from their `data` (was
# "ecf7984b646d7ed8e9b23c96fb4ad60534d1a8cbf1c29d569300cc9892b1b1cf").
# Re-pinned in session 28: `ORDER_NOT_OPEN` says how the closed order closed (`data.status`,
# and `msg` "the order is closed: filled"). The same 1,506 answers; the 37 that differ carry
# the 43 such refusals, equal to the old ones with the status removed from both (was
# "1508a0ee4bc1de4c39acb0f41a7173f38de5abf5dff771fdf485d8fb025efe67").
# Re-pinned in session 29: a `BAD_PRECISION` or too-large refusal of a price or quantity ends
# with the field's place, as the zero refusal does. The same 1,506 answers; the 22 that differ
# are `BAD_PRECISION` refusals of `price`, equal to the old ones with `` - at `params.price` ``
# removed (was "b102d7c7ee70411756b4188ef4b98c65acbc65f53a4390342b3126afe1283bd4").
# Re-pinned in session 30: an `UNKNOWN_SYMBOL` refusal of a command ends with its field's
# place, as a tick, step, zero or precision refusal does. The same 1,506 answers; the 29 that
# differ are `UNKNOWN_SYMBOL` refusals, equal to the old ones with `` - at `params.symbol` ``
# removed (was "29e3be09a97d3ee261aa19d2e94cd0465408083d99024f5a80f2ecdd8d0e3fae").
# Re-pinned in session 31: a plain requote is one command (`AmendPair`), so its two results
# share its seq and every later command's seq is lower. The same 1,506 answers; the 880 that
# differ differ only in their seqs, each of the old seqs mapping to one new seq, in order
# (the two amends' seqs of a requote to the pair's); with `Dispatcher.requote_pairs` off the
# digest is the old one (was "bae688bc48367764650ade789c823ff5f50b1133e5a0d0705c8471502e2719c3").
PINNED = ("6eff91fde7c644beff77fe3a9f76d9e382c4b4aa0aaf789a601949f9fbd29fb4", 1506)
REQUESTS = 1_500
DRAIN_EVERY = 7  # requests fed per loop turn before the journal commits: odd, so batches mix
SYMBOLS = ("AAPLx-USD", "MSFTx-USD")
MID = {"AAPLx-USD": 18725, "MSFTx-USD": 41210}  # reference prices, in cents
# The clock's values: the only bytes of an answer that differ from run to run.
_CLOCK = re.compile(rb'"(t_in|t_out|ts|epoch|pong|time|created_at|updated_at)":\d+')


class RecordingTransport(ingress_bench.FakeTransport):
    """A fake transport that keeps what is written, for the frames in it."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        super().write(data)
        self.data += data

    def writelines(self, chunks: Any) -> None:
        chunks = list(chunks)
        super().writelines(chunks)
        for chunk in chunks:
            self.data += chunk


def server_frames(data: bytes) -> list[bytes]:
    """The payloads of the unmasked text frames a server wrote (RFC 6455 §5.2)."""
    payloads, position = [], 0
    while position < len(data):
        opcode, length = data[position] & 0x0F, data[position + 1] & 0x7F
        position += 2
        if length == 126:
            length = int.from_bytes(data[position : position + 2])
            position += 2
        elif length == 127:
            length = int.from_bytes(data[position : position + 8])
            position += 8
        if opcode == 0x1:
            payloads.append(bytes(data[position : position + length]))
        position += length
    return payloads


def _price(rng: random.Random, symbol: str) -> str:
    cents = MID[symbol] + rng.randint(-30, 30)
    return f"{cents // 100}.{cents % 100:02d}"


def _qty(rng: random.Random) -> str:
    return rng.choice(("0.01", "0.5", "1", "2.25", "3"))


class Scenario:
    """A seeded stream of requests of every order-entry kind, and a few that are refused."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.placed = 0  # order ids are counted by the venue from 1: guessed, some wrong

    def place_params(self) -> dict[str, Any]:
        rng = self.rng
        symbol = rng.choice(SYMBOLS)
        params: dict[str, Any] = {
            "symbol": symbol,
            "side": rng.choice(("buy", "sell")),
            "type": "limit",
            "tif": "gtc",
            "price": _price(rng, symbol),
            "qty": _qty(rng),
        }
        roll = rng.random()
        if roll < 0.25:
            params["tif"] = "ioc"
        elif roll < 0.35:
            params["post_only"] = True
        if rng.random() < 0.3:
            params["cl_ord_id"] = f"c{rng.randint(0, 400)}"
        self.placed += 1
        return params

    def order_ref(self) -> dict[str, Any]:
        if self.rng.random() < 0.2:
            return {"cl_ord_id": f"c{self.rng.randint(0, 400)}"}
        return {"order_id": self.rng.randint(max(self.placed - 60, 1), self.placed + 5)}

    def amend_params(self) -> dict[str, Any]:
        params = self.order_ref()
        if self.rng.random() < 0.7:
            params["qty"] = _qty(self.rng)
        if self.rng.random() < 0.5:
            params["price"] = _price(self.rng, self.rng.choice(SYMBOLS))
        return params

    def quote_params(self, maker: int) -> dict[str, Any]:
        rng = self.rng
        quotes = []
        for symbol in rng.sample(SYMBOLS, rng.randint(1, 2)):
            bid = MID[symbol] - rng.randint(1, 20)
            ask = MID[symbol] + rng.randint(1, 20)
            quote: dict[str, Any] = {"symbol": symbol}
            quote["bid_px"] = f"{bid // 100}.{bid % 100:02d}"
            quote["bid_qty"] = rng.choice(("0", "1", "2", "5"))
            if rng.random() < 0.8:
                quote["ask_px"] = f"{ask // 100}.{ask % 100:02d}"
                quote["ask_qty"] = rng.choice(("0", "1", "2", "5"))
            quotes.append(quote)
        return {"quote_set": f"set-{maker}-{rng.randint(0, 2)}", "quotes": quotes}

    def batch_ops(self) -> list[dict[str, Any]]:
        ops: list[dict[str, Any]] = []
        for _ in range(self.rng.randint(1, 20)):
            roll = self.rng.random()
            if roll < 0.6:
                ops.append({"method": "order.place", "params": self.place_params()})
            elif roll < 0.8:
                ops.append({"method": "order.cancel", "params": self.order_ref()})
            else:
                ops.append({"method": "order.amend", "params": self.amend_params()})
        if self.rng.random() < 0.05:  # malformed: the whole batch is refused
            ops[-1] = {"method": "order.place", "params": {"symbol": SYMBOLS[0]}}
        return ops

    def request(self, maker: bool, number: int) -> tuple[str, dict[str, Any]]:
        """The next request of a maker (quotes) or a taker (everything else)."""
        rng = self.rng
        roll = rng.random()
        if maker:
            if roll < 0.85:
                return "quote.mass", self.quote_params(number)
            if roll < 0.95:
                params: dict[str, Any] = {"quote_set": f"set-{number}-{rng.randint(0, 2)}"}
                if rng.random() < 0.5:
                    params["symbol"] = rng.choice(SYMBOLS)
                return "orders.cancel_all", params
            return "orders.open", {}
        if roll < 0.45:
            return "order.place", self.place_params()
        if roll < 0.6:
            return "order.cancel", self.order_ref()
        if roll < 0.7:
            return "order.amend", self.amend_params()
        if roll < 0.85:
            return "order.batch", {"ops": self.batch_ops()}
        if roll < 0.9:
            unknown = {"symbol": "NOPE-USD", "side": "buy", "price": "1", "qty": "1"}
            return "order.place", unknown | {"type": "limit", "tif": "gtc"}
        if roll < 0.93:
            bad = self.place_params() | {"price": "187.251"}  # BAD_PRECISION
            return "order.place", bad
        if roll < 0.95:
            return "order.launch", {}
        if roll < 0.97:
            return "orders.cancel_all", {"symbol": rng.choice(SYMBOLS)}
        return "balances", {}


async def answers(seed: int = 7, requests: int = REQUESTS) -> list[bytes]:
    """Every answer the four connections were written, in order per connection, masked."""
    with tempfile.TemporaryDirectory(prefix="venue-answer-digest-") as name:
        directory = Path(name)
        config = SAMPLE_CONFIG
        path = server_process.unlimited_config(config, directory, ingress_bench.accounts_toml())
        server = VenueServer(venue_config.load(path), directory / "data")
        await server.start("127.0.0.1", 0)
        try:
            bench = ingress_bench.Bench(server, as_e2e=False)  # its sessions, as pinned
            clients = bench.makers + bench.takers
            recorders = []
            for client in clients:  # from here on, what each is written is kept
                recorder = RecordingTransport()
                recorder.protocol = client.connection
                client.connection.transport = recorder  # type: ignore[assignment]
                recorders.append(recorder)
            await server.sequencer.drain()
            scenario = Scenario(seed)
            for number in range(requests):
                index = scenario.rng.randrange(len(clients))
                method, params = scenario.request(index < 2, index)
                client = clients[index]
                client.connection.data_received(client.frame(method, params))
                if number % DRAIN_EVERY == DRAIN_EVERY - 1:
                    await server.sequencer.drain()
            await server.sequencer.drain()
            server.connections.flush_outboxes()
            result = []
            for recorder in recorders:
                for payload in server_frames(bytes(recorder.data)):
                    message = msgspec.json.decode(payload)
                    if isinstance(message, dict) and "id" in message:
                        result.append(_CLOCK.sub(rb'"\1":0', payload))
            return result
        finally:
            await server.stop()


def digest(seed: int = 7, requests: int = REQUESTS) -> tuple[str, int]:
    """The answers' sha256 and how many there were."""
    found = server_process.run_async(answers(seed, requests))
    return hashlib.sha256(b"\n".join(found)).hexdigest(), len(found)


def test_the_answers_are_mains() -> None:
    assert digest() == PINNED


if __name__ == "__main__":
    print(digest())
