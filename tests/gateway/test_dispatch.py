"""`gateway.dispatch`'s tables: a request's rate-limit cost and scope, looked up per request,
are what `gateway.limits` and `_scope_of` say (the server's behaviour is in test_server*);
its fast paths decide as the general code does, on a real server; and requests held behind a
waiting requote are served in order once its place is back (a stop refusing them:
test_server_recovery)."""

import asyncio
import collections
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bench import ingress_bench, server_process
from core import config as venue_config
from core.sequencer import pair_sides
from engine.commands import AmendPair
from engine.enums import Side
from gateway import dispatch, limits, reports, wire
from gateway.server import VenueServer
from tests.gateway import test_answer_digest
from tests.sample_config import SAMPLE_CONFIG

PLACE = wire.PlaceParams("S", wire.Side.BUY, wire.OrderType.LIMIT, wire.TimeInForce.IOC, "1", "1")
OPS: dict[str, Any] = {
    "order.place": wire.PlaceOp(PLACE),
    "order.cancel": wire.CancelOp(wire.CancelParams(order_id=1)),
    "order.amend": wire.AmendOp(wire.AmendParams(order_id=1, qty="1")),
}


def test_a_batch_costs_the_sum_of_its_ops_as_limits_says() -> None:
    for kinds in (["order.place"], ["order.cancel"] * 20, ["order.amend", "order.cancel"] * 10):
        request = wire.Request(1, "order.batch", wire.BatchParams(tuple(OPS[k] for k in kinds)))
        assert dispatch._cost(request) == limits.batch_cost_milli(kinds)


def test_a_quote_mass_costs_per_quote_clamped_as_limits_says() -> None:
    for count in (0, 1, 2, limits.QUOTES_PER_MASS_MAX, limits.QUOTES_PER_MASS_MAX + 5):
        quotes = tuple(wire.Quote(f"S{index}") for index in range(count))
        request = wire.Request(1, "quote.mass", wire.QuoteMassParams("q", quotes))
        assert dispatch._cost(request) == limits.cost_milli("quote.mass", count)


def test_every_method_costs_and_needs_what_limits_and_scope_of_say() -> None:
    for method, kind in wire.METHODS.items():
        if kind in (wire.BatchParams, wire.QuoteMassParams):
            continue
        request = wire.Request(1, method, wire.PingParams())
        assert dispatch._cost(request) == limits.cost_milli(method), method
        assert dispatch._SCOPE_OF[method] == dispatch._scope_of(method), method


# ----------------------------------------------------------------- the fast paths


class FastPaths:
    """Wrappers that check each fast path of the request path against the general code it
    stands for, on the live state, and count how often each was taken. A difference is kept
    in `differences`, not raised: raised in the release of a batch, it would be fatal."""

    def __init__(self, server: VenueServer, differences: list[Any]) -> None:
        self.taken: collections.Counter[str] = collections.Counter()
        self.differences = differences
        dispatcher = server.dispatcher
        self.specs, self.scales = dispatcher.specs, dispatcher.scales
        self.placed = dispatcher.placed
        self._amends = self.placed.amends
        self.placed.amends = self.amends  # type: ignore[method-assign]
        self._answer = dispatcher.answer
        dispatcher.answer = self.answer  # type: ignore[method-assign]
        self.finish_requote = dispatcher._finish_requote

    def amends(self, account: int, quote_set: str, symbol: str, units: Any, ts_us: int) -> Any:
        pair = self._amends(account, quote_set, symbol, units, ts_us)
        if pair is not None:
            bid_px, bid_qty, ask_px, ask_qty = units
            requote = self.placed.requote
            bid = requote((account, quote_set, symbol, Side.BUY), bid_px, bid_qty, ts_us)
            ask = requote((account, quote_set, symbol, Side.SELL), ask_px, ask_qty, ts_us)
            if pair.sides() != (bid, ask):
                self.differences.append(("amends", pair, (bid, ask)))
            self.taken["amends"] += 1
        return pair

    def answer(self, pending: dispatch.Pending) -> None:
        for each in _each_command(pending.results):  # all in: the answer goes now
            if each.command is not None:
                plain = wire.encode(dispatch._plain_outcome(each))  # a struct encodes as
                general = wire.encode(dispatch._outcome(each))  # the dict
                if plain != general:
                    self.differences.append(("outcome", plain, general))
                self.taken["outcome"] += 1
        if pending.finish is self.finish_requote:
            self.check_requote(pending)
        self._answer(pending)

    def check_requote(self, pending: dispatch.Pending) -> None:
        """The template's answer is `_batch_result`'s, whatever the id (a string's JSON)."""
        for request_id in (pending.request_id, 'a "quoted\\" é id', "0", 2**53 - 1):
            pair = [*pending.results]
            sides = [*_each_command(pair)]
            pending_pair = msgspec.structs.replace(pending, request_id=request_id, results=pair)
            both = msgspec.structs.replace(pending, request_id=request_id, results=sides)
            plain = _T_OUT.sub(b"", dispatch._requote_result(pending_pair))
            general = _T_OUT.sub(b"", dispatch._batch_result(both))
            if plain != general:
                self.differences.append(("requote", plain, general))
            self.taken["requote template"] += plain.startswith(b'{"id":') and all(
                _amended_only(each) for each in sides
            )


def _each_command(results: list[Any]) -> Iterator[Any]:
    """The outcomes, an `AmendPair`'s as its two amends' (each with the pair's seq)."""
    for executed in results:
        if type(executed.command) is AmendPair:
            yield from pair_sides(executed)
        else:
            yield executed


def _amended_only(executed: Any) -> bool:
    """The amend only amended (and moved a hold): its answer comes from the template."""
    kinds = tuple(type(event) for event in executed.events)
    return kinds in reports.AMENDED_ONLY and bool(executed.events[0].order_id)


_T_OUT = re.compile(rb'"t_out":\d+')


def check_place(original: Any, taken: collections.Counter[str], differences: list[Any]) -> Any:
    def plain_place(params: Any, specs: Any, account: int, ts_us: int) -> Any:
        place = original(params, specs, account, ts_us)
        if place is not None:  # what `to_command` makes of the same params
            general = wire.params_to_command(params, specs, {}, account, ts_us=ts_us)
            if place != general:
                differences.append(("place", place, general))
            taken["place"] += 1
        return place

    return plain_place


def check_quote_units(
    original: Any, taken: collections.Counter[str], differences: list[Any]
) -> Any:
    def plain_quote_units(quote: Any, specs: Any) -> Any:
        units = original(quote, specs)
        if units is not None:
            general: Any = wire.quote_units(quote, specs)
            if units != (general.bid_px, general.bid_qty, general.ask_px, general.ask_qty):
                differences.append(("quote units", units, general))
            taken["quote units"] += 1
        return units

    return plain_quote_units


async def fast_path_run(
    taken: collections.Counter[str], differences: list[Any], requests: int
) -> None:
    """The e2e mix of the ingress bench, then the answer digest's scenario (every
    order-entry kind, refusals among them), through a real server whose fast paths are
    checked."""
    with tempfile.TemporaryDirectory(prefix="venue-fast-paths-") as name:
        directory = Path(name)
        config = SAMPLE_CONFIG
        path = server_process.unlimited_config(config, directory, ingress_bench.accounts_toml())
        server = VenueServer(venue_config.load(path), directory / "data")
        await server.start("127.0.0.1", 0)
        try:
            bench = ingress_bench.Bench(server)
            checks = FastPaths(server, differences)
            clients = bench.makers + bench.takers
            await server.sequencer.drain()
            for kind in ("quote", "place", "batch"):  # on an empty book, as the bench runs
                for _ in range(3):
                    await bench.restock()
                    for connection, frame in bench.requests(kind, 16):
                        connection.data_received(frame)
                    await server.sequencer.drain()
            scenario = test_answer_digest.Scenario(11)
            for number in range(requests):
                index = scenario.rng.randrange(len(clients))
                method, params = scenario.request(index < 2, index)
                client = clients[index]
                client.connection.data_received(client.frame(method, params))
                if number % 5 == 4:
                    await server.sequencer.drain()
            await server.sequencer.drain()
            taken.update(checks.taken)
        finally:
            await server.stop()


def test_the_fast_paths_decide_as_the_general_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each fast path of the request path (a place converted in one call, a one-quote
    requote's units and amends, an outcome read without the loop, a requote's answer from a
    template) gives what the general code gives for the same request on the same state; and
    each is taken, so the comparisons were made."""
    taken: collections.Counter[str] = collections.Counter()
    differences: list[Any] = []
    place = check_place(wire.plain_place, taken, differences)
    monkeypatch.setattr(wire, "plain_place", place)
    units = check_quote_units(wire.plain_quote_units, taken, differences)
    monkeypatch.setattr(wire, "plain_quote_units", units)
    server_process.run_async(fast_path_run(taken, differences, 600))
    assert differences == []
    for path in ("amends", "outcome", "requote template", "place", "quote units"):
        assert taken[path] > 20, (path, taken)


# ----------------------------------------------------------------- held requests


def test_frames_held_behind_a_waiting_requote_are_served_in_order_once_its_place_is_back(
    run_venue: Any,
) -> None:
    """Over a cluster's bus a requote that touches a quote whose place is in flight waits
    for it, with every later frame of its connection (`HeldRequests.hold`). Here a slot marked
    as placing stands for the place in flight: once it is back, the next released batch (a
    command of another connection) serves the requote, then the frames held behind it, in
    request order (`resume_held`): the open orders listed last show both before it."""

    async def scenario(venue: Any) -> None:
        server = venue.server
        maker = await venue.client("alpha")
        await maker.request("session.cod", {"enabled": True})
        session = next(s for s in server.sessions.values() if s.account == 1)
        slot = (1, "resumed", "AAPLx-USD", Side.BUY)
        server.dispatcher.placed.placing[slot] = time.monotonic()
        bid = {"symbol": "AAPLx-USD", "bid_px": "186.00", "bid_qty": "1"}
        place = {"symbol": "AAPLx-USD", "side": "sell", "type": "limit", "tif": "gtc"}
        answering = asyncio.gather(
            maker.request_raw("quote.mass", {"quote_set": "resumed", "quotes": [bid]}),
            maker.request_raw("order.place", place | {"qty": "1", "price": "187.30"}),
            maker.request_raw("orders.open", {}),
        )
        for _ in range(300):  # bounded: up to 3 s for the three frames to arrive
            if session.held is not None and len(session.held) == 2:
                break
            await asyncio.sleep(0.01)
        assert session.held is not None and len(session.held) == 2, "held behind the requote"
        server.dispatcher.placed.place_back(slot)
        other = await venue.client("beta")
        await other.place("AAPLx-USD", "buy", "1", "100.00")  # a released batch
        requoted, placed, listed = await asyncio.wait_for(answering, 5)
        assert [a["status"] for a in (requoted, placed, listed)] == [200, 200, 200]
        assert session.held is None and server.dispatcher.held == {}
        orders = listed["result"]["orders"]  # decided after both before it
        assert {o["order_id"] for o in orders} == {
            requoted["result"]["results"][0]["result"]["order_id"],
            placed["result"]["order_id"],
        }

    run_venue(scenario)


def held_request_ids(server: VenueServer, monkeypatch: pytest.MonkeyPatch) -> list[int | str]:
    """The ids of the requests the server holds to wait for a place, noted as each is held
    (`HeldRequests.hold`, called through unchanged): a request refused at once is not held,
    one refused once its wait is over was."""
    held: list[int | str] = []
    held_requests = server.dispatcher.held_requests
    hold = held_requests.hold

    def hold_noted(session: Any, request: wire.Request, *rest: Any) -> None:
        held.append(request.id)
        hold(session, request, *rest)

    monkeypatch.setattr(held_requests, "hold", hold_noted)
    return held


def test_a_requote_waiting_too_long_for_a_place_is_refused_and_the_slot_stays_blocked(
    run_venue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A place whose outcome does not come back (a core failing over, or none active) held
    the requotes of its slot, and every later frame of their connection, for as long as it
    took: for good if it never came. Now the waiting requote is refused 503
    `QUOTE_PLACE_PENDING` once the place has been on its way `QUOTE_PLACE_WAIT_S` (here made
    short), the frames behind it are handled, and a later requote of the slot is refused at
    once; none of them places a second quote beside the one on its way. Once the place is
    back the slot is free: the next requote is served."""
    monkeypatch.setattr(limits, "QUOTE_PLACE_WAIT_S", 1.5)

    async def scenario(venue: Any) -> None:
        server = venue.server
        maker = await venue.client("alpha")
        await maker.request("session.cod", {"enabled": True})
        session = next(s for s in server.sessions.values() if s.account == 1)
        slot = (1, "stuck", "AAPLx-USD", Side.BUY)
        sent_s = server.dispatcher.placed.placing[slot] = time.monotonic()  # never back
        held = held_request_ids(server, monkeypatch)
        bid = {"symbol": "AAPLx-USD", "bid_px": "186.00", "bid_qty": "1"}
        requote = {"quote_set": "stuck", "quotes": [bid]}
        place = {"symbol": "AAPLx-USD", "side": "sell", "type": "limit", "tif": "gtc"}
        started = time.monotonic()
        refused, placed, listed = await asyncio.wait_for(
            asyncio.gather(
                maker.request_raw("quote.mass", requote),
                maker.request_raw("order.place", place | {"qty": "1", "price": "187.30"}),
                maker.request_raw("orders.open", {}),
            ),
            5,
        )
        # a lower bound the wait's timer guarantees: a busy machine only makes it longer
        assert time.monotonic() - started >= 1.4, "it waited for the place first"
        assert held == [refused["id"]], "the requote waited, alone: those behind it were not"
        assert (refused["status"], refused["error"]["name"]) == (503, "QUOTE_PLACE_PENDING")
        assert "not executed" in refused["error"]["msg"], refused
        assert [placed["status"], listed["status"]] == [200, 200], "those behind it ran"
        orders = listed["result"]["orders"]
        assert [o["order_id"] for o in orders] == [placed["result"]["order_id"]], "no quote"
        assert session.held is None and server.dispatcher.held == {}
        again = await maker.request_raw("quote.mass", requote)
        assert (again["status"], again["error"]["name"]) == (503, "QUOTE_PLACE_PENDING")
        assert held == [refused["id"]], "refused at once, not held: the place is overdue"
        assert server.dispatcher.placed.placing[slot] == sent_s, "its wait not started again"
        assert slot in server.dispatcher.placed.placing, "blocked until its outcome is back"
        server.dispatcher.placed.place_back(slot)
        served = await maker.request_raw("quote.mass", requote)
        assert served["status"] == 200, served
        assert served["result"]["results"][0]["result"]["status"] == "new"

    run_venue(scenario)


# ----------------------------------------------------------------- a requote as one command

_ANSWER_SEQ = re.compile(rb'"result":\{"seq":(\d+)')  # a trading answer's (or op's) journal seq
_MASKED = re.compile(rb'"(t_in|t_out|ts|epoch|pong|time|created_at|updated_at)":\d+')
# Plain requotes of maker 0's first quote whose one side is refused (a bid the cash cannot
# hold, an ask the shares cannot cover: 100,000 USD and 1,000 AAPLx each, `accounts_toml`)
_ONE_SIDE_REFUSED = (
    {"bid_px": "187.23", "bid_qty": "1000", "ask_px": "187.27", "ask_qty": "5"},
    {"bid_px": "187.22", "bid_qty": "5", "ask_px": "187.28", "ask_qty": "2000"},
    {"bid_px": "187.21", "bid_qty": "900", "ask_px": "187.29", "ask_qty": "1500"},
)


def trading_state(venue: Any) -> list[Any]:
    """The venue's books (orders in priority order, every field) and balances: its state
    but for the times (two runs' clocks differ, so their `state_hash`es do)."""
    books = [
        [msgspec.structs.astuple(order) for order in market.book.iter_orders()]
        for _, market in sorted(venue.markets.items())
    ]
    balances = sorted((key, b.total, b.held) for key, b in venue.ledger.balances.items())
    return [books, balances]


async def recorded_run(
    requote_pairs: bool, requests: int
) -> tuple[list[bytes], list[int], list[Any]]:
    """The ingress bench's e2e mix (its clients packed, following their account stream, one
    following the public book, bbo and trades too), requotes with a side refused, then the
    answer digest's scenario, through a real server sending plain requotes as `AmendPair`s
    or as two amends: every frame written to each connection (the clock's values masked, a
    trading answer's seq as 0), the answers' seqs in that order, and the trading state."""
    with tempfile.TemporaryDirectory(prefix="venue-requote-pairs-") as name:
        directory = Path(name)
        path = server_process.unlimited_config(
            SAMPLE_CONFIG, directory, ingress_bench.accounts_toml()
        )
        server = VenueServer(venue_config.load(path), directory / "data")
        await server.start("127.0.0.1", 0)
        try:
            server.dispatcher.requote_pairs = requote_pairs
            # Each release's market data published at once: not paced by the CPU time the
            # last publication took, so the two runs coalesce the same updates (`flush`)
            server.public.publish = server.public.flush  # type: ignore[method-assign]
            bench = ingress_bench.Bench(server)
            clients = bench.makers + bench.takers
            watcher = bench.takers[1]
            for channel in ("book", "bbo", "trades"):
                params = {"ch": channel, "symbols": list(test_answer_digest.SYMBOLS)}
                watcher.connection.data_received(watcher.frame("subscribe", params))
            recorders = []
            for client in clients:  # from here on, what each is written is kept
                recorder = test_answer_digest.RecordingTransport()
                recorder.protocol = client.connection
                client.connection.transport = recorder  # type: ignore[assignment]
                recorders.append(recorder)
            await server.sequencer.drain()
            for kind in ("quote", "place", "batch"):
                for _ in range(3):
                    await bench.restock()
                    for connection, frame in bench.requests(kind, 16):
                        connection.data_received(frame)
                    await server.sequencer.drain()
            maker = bench.makers[0]
            for quote in _ONE_SIDE_REFUSED:
                params = {"quote_set": "ingress-0-0", "quotes": [{"symbol": "AAPLx-USD"} | quote]}
                maker.connection.data_received(maker.frame("quote.mass", params))
            await server.sequencer.drain()
            scenario = test_answer_digest.Scenario(11)
            for number in range(requests):
                index = scenario.rng.randrange(len(clients))
                method, params = scenario.request(index < 2, index)
                client = clients[index]
                client.connection.data_received(client.frame(method, params))
                if number % 5 == 4:
                    await server.sequencer.drain()
            await server.sequencer.drain()
            server.connections.flush_outboxes()
            frames: list[bytes] = []
            seqs: list[int] = []
            for recorder in recorders:
                for payload in test_answer_digest.server_frames(bytes(recorder.data)):
                    seqs += map(int, _ANSWER_SEQ.findall(payload))
                    masked = _MASKED.sub(rb'"\1":0', payload)
                    frames.append(_ANSWER_SEQ.sub(rb'"result":{"seq":0', masked))
            return frames, seqs, trading_state(server.core.venue)
        finally:
            await server.stop()


def test_a_requote_as_one_command_sends_what_its_two_amends_sent() -> None:
    """The same request stream, its plain requotes sent as one `AmendPair` each and as two
    amends (`_requote_each`, the path of main before it): every frame each connection is
    written (answers, private pushes and their seqs, the public book, bbo and trades) is the
    same byte for byte but for a trading answer's `seq`, and the venue ends in the same state.
    The seqs differ only as one command numbers both sides of a requote (docs/protocol.md
    §5.5): one seq of the two amends' is one of the pair's, in the same order. Requotes with
    one side refused are among them (409, partly done, alike)."""
    pairs, pair_seqs, pair_state = server_process.run_async(recorded_run(True, 400))
    amends, amend_seqs, amend_state = server_process.run_async(recorded_run(False, 400))
    assert len(pairs) == len(amends)
    different = [(a, b) for a, b in zip(pairs, amends, strict=True) if a != b]
    assert different == []
    assert pair_state == amend_state
    assert any(b'"status":409' in frame and b"INSUFFICIENT_BALANCE" in frame for frame in pairs)
    # each seq of the two amends' run is one of the pair's: fewer, in the same order
    renumbered = dict(zip(amend_seqs, pair_seqs, strict=True))
    assert [renumbered[seq] for seq in amend_seqs] == pair_seqs
    assert len(set(amend_seqs)) - len(set(pair_seqs)) > 50  # the pairs were sent: 87 here
    assert sorted(renumbered.values()) == [renumbered[seq] for seq in sorted(renumbered)]
