"""The limits per client IP through a real server on 127.0.0.1. The caps on open
connections, per IP and in total, websocket and plain HTTP alike: refused with 503 and
`Retry-After` at the first request, freed when a connection closes. (Before session 23
there was no cap: a client opened as many connections as it liked, each with a fresh
per-connection rate budget.) And the web page's files, charged to the IP's bucket."""

import asyncio
import base64
import contextlib
import logging
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from client.rest import RestClient
from client.sdk import VenueClient
from core import config as venue_config
from gateway.auth import sign_request
from gateway.server import VenueServer
from tests.conftest import KEYS, SAMPLE_CONFIG, TEST_TIMEOUT_S
from tests.gateway.test_http import read_response

Head = tuple[int, dict[str, str]]
Opened = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def start(
    tmp_path: Path,
    per_ip_max: int,
    total_max: int,
    trusted_proxies: tuple[str, ...] = (),
    unsigned_rate_per_ip_per_s: int = 1_000,
    **more_limits: int,
) -> tuple[VenueServer, int]:
    """A venue whose `[limits]` caps the open connections at these numbers."""
    config = venue_config.load(SAMPLE_CONFIG)
    limits = msgspec.structs.replace(
        config.limits,
        connections_per_ip_max=per_ip_max,
        connections_max=total_max,
        trusted_proxies=trusted_proxies,
        unsigned_rate_per_ip_per_s=unsigned_rate_per_ip_per_s,
        **more_limits,
    )
    server = VenueServer(msgspec.structs.replace(config, limits=limits), tmp_path / "data")
    return server, await server.start("127.0.0.1", 0)


async def opened(port: int, ip: str, request: bytes) -> tuple[Head, Opened]:
    """Connect from `ip` (any 127.x is loopback), send `request`, read the answer's head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0))
    writer.write(request)
    status = int((await reader.readline()).split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return (status, headers), (reader, writer)


def upgrade(route: str = "/ws/public") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {route} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


TICKER = b"GET /api/v1/ticker HTTP/1.1\r\nHost: x\r\n\r\n"
PAGE = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def refused(
    port: int, ip: str, request: bytes, content_types: list[str] | None = None
) -> str:
    """The request on a new connection from `ip` is refused 503, `Retry-After: 1`, and the
    connection closed: the refusal's words (its content type added to `content_types`)."""
    (status, headers), (reader, writer) = await opened(port, ip, request)
    assert (status, headers.get("retry-after")) == (503, "1"), (status, headers)
    if content_types is not None:
        content_types.append(headers.get("content-type", "").partition(";")[0])
    body = await asyncio.wait_for(reader.read(), 5)  # to EOF: the server closed it
    writer.close()
    return body.decode()


async def refused_in_json(port: int, ip: str, request: bytes) -> str:
    """As `refused`, for a REST request: answered in REST's words, its JSON error
    `TOO_MANY_CONNECTIONS` (before, the same plain text as the web page's): the `msg`."""
    content_types = []
    body = msgspec.json.decode(await refused(port, ip, request, content_types))
    assert content_types == ["application/json"], content_types
    assert body["error"]["code"] == 9005 and body["error"]["name"] == "TOO_MANY_CONNECTIONS"
    return f"{body['error']['msg']}\n"  # the plain text's line, without its newline


def test_connections_past_the_per_ip_cap_are_refused_until_one_closes(tmp_path: Path) -> None:
    async def scenario() -> None:
        server, port = await start(tmp_path, per_ip_max=3, total_max=100)
        try:
            socket_a = (await opened(port, "127.0.0.1", upgrade()))[1]
            socket_b = (await opened(port, "127.0.0.1", upgrade()))[1]
            (status, _), rest = await opened(port, "127.0.0.1", TICKER)  # REST counts too
            assert status == 200
            words = "at most 3 connections from one address; close one first\n"
            for request in (upgrade(), PAGE):  # websocket, the web page: plain text
                assert await refused(port, "127.0.0.1", request) == words
            assert await refused_in_json(port, "127.0.0.1", TICKER) == words  # REST: JSON
            (status, _), other_ip = await opened(port, "127.0.0.2", upgrade())
            assert status == 101  # another address has its own count
            socket_a[1].close()  # one of 127.0.0.1's closes: room for one more
            for _ in range(100):  # bounded: the server sees the close within a loop turn
                if server._server is not None and server._server.counts.total == 3:
                    break
                await asyncio.sleep(0.01)
            (status, _), again = await opened(port, "127.0.0.1", upgrade())
            assert status == 101
            for _, writer in (socket_b, rest, other_ip, again):
                writer.close()
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def test_connections_past_the_total_cap_are_refused_from_any_address(tmp_path: Path) -> None:
    async def scenario() -> None:
        server, port = await start(tmp_path, per_ip_max=10, total_max=2)
        try:
            first = (await opened(port, "127.0.0.1", upgrade()))[1]
            second = (await opened(port, "127.0.0.2", TICKER))[1]
            words = "the venue has its most connections (2); retry later\n"
            assert await refused(port, "127.0.0.3", upgrade()) == words
            assert await refused_in_json(port, "127.0.0.3", TICKER) == words
            for _, writer in (first, second):
                writer.close()
        finally:
            await server.stop()
        assert server._server is not None and server._server.counts.total == 0

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


async def until(condition: Any) -> None:
    """Wait for `condition()`, bounded: the server sees a connect or a close in a turn."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server did not get there within 5 s")


def test_refused_connections_are_held_to_be_answered_only_up_to_a_bound(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A refused connection is not counted in the caps, so a flood of them past the caps
    would hold sockets without bound: past `refused_held_max` held at once, one is closed
    at once, unanswered. (The hold's deadline is lengthened so no timer races the test.)"""
    from gateway import transport

    monkeypatch.setattr(transport, "CONNECTION_REFUSED_TIMEOUT_S", 60)

    async def scenario() -> None:
        server, port = await start(tmp_path, per_ip_max=1, total_max=100)
        assert server._server is not None
        counts = server._server.counts
        counts.refused_held_max = 1
        try:
            admitted = (await opened(port, "127.0.0.1", upgrade()))[1]
            _, held = await asyncio.open_connection("127.0.0.1", port)  # refused, silent
            await until(lambda: counts.refused_held == 1)
            reader, cut = await asyncio.open_connection("127.0.0.1", port)
            cut.write(TICKER)
            with contextlib.suppress(ConnectionResetError):  # the abort's RST: closed too
                assert await asyncio.wait_for(reader.read(), 5) == b""  # no answer
            cut.close()
            assert counts.refused_held == 1
            words = "at most 1 connections from one address; close one first\n"
            held.close()
            await until(lambda: counts.refused_held == 0)
            assert await refused_in_json(port, "127.0.0.1", TICKER) == words  # held, answered
            await until(lambda: counts.refused_held == 0)
            admitted[1].close()
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


async def answers(port: int, ip: str, requests: list[bytes]) -> list[Head]:
    """Send `requests` at once on a new connection from `ip`: each answer's head, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0))
    writer.write(b"".join(requests))
    heads = []
    for _ in requests:
        status, headers, _ = await read_response(reader)
        heads.append((status, headers))
    writer.close()
    return heads


def test_the_page_files_are_charged_to_the_client_ip(tmp_path: Path, monkeypatch: Any) -> None:
    """The web page's files (and 404s outside the API) cost a token of their IP's bucket,
    100 at once and 20 a second, whichever connection asks: past it, 429 with
    `Retry-After`. (Before: served uncharged, as fast as a client sent them.) The server's
    clock is frozen, moved by the test: no refill while the requests are served."""
    from gateway import connection_handler
    from gateway.limits import PAGE_FILES_BURST

    clock = [0]

    async def scenario() -> None:
        server, port = await start(tmp_path, per_ip_max=10, total_max=100)
        clock[0] = time.time_ns() // 1_000
        monkeypatch.setattr(connection_handler, "now_us", lambda: clock[0])
        try:
            files = [PAGE, b"GET /static/app.js HTTP/1.1\r\nHost: x\r\n\r\n"]
            files.append(b"GET /no/such/path HTTP/1.1\r\nHost: x\r\n\r\n")
            half = PAGE_FILES_BURST // 2  # on two connections: the IP's bucket, not theirs
            first = await answers(port, "127.0.0.1", (files * half)[:half])
            second = await answers(port, "127.0.0.1", (files * half)[: half + 1])
            statuses = [status for status, _ in first + second]
            assert set(statuses[:-1]) <= {200, 404} and statuses[-1] == 429, statuses
            assert second[-1][1]["retry-after"] == "1"  # 50 ms, in whole seconds
            [(status, _)] = await answers(port, "127.0.0.2", [PAGE])
            assert status == 200  # another IP has its own bucket
            [(status, _)] = await answers(port, "127.0.0.1", [TICKER])
            assert status == 200  # the REST API is charged by its own buckets
            clock[0] += 50_000  # one token back
            [(ok, _), (limited, _)] = await answers(port, "127.0.0.1", [PAGE, PAGE])
            assert (ok, limited) == (200, 429)
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def test_unsigned_rest_requests_are_charged_to_the_client_ip(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """REST's unsigned requests (public reads) cost their IP's bucket too, all its
    connections together: 10 tokens a second, 20 at once, so 40 reads (0.5 each) from
    four connections at once, each far under its own bucket (400), then 429 with
    `Retry-After` and REST's JSON error. Another IP is unaffected. (Before: per connection
    only, so one IP's 256 connections sent 256 times a connection's rate.) REST's clock is
    frozen, moved by the test: no refill while the requests are served."""
    from gateway import rest

    clock = [time.time_ns() // 1_000]
    monkeypatch.setattr(rest, "now_us", lambda: clock[0])

    async def scenario() -> None:
        server, port = await start(tmp_path, 10, 100, unsigned_rate_per_ip_per_s=10)
        try:
            together = [answers(port, "127.0.0.1", [TICKER] * 10) for _ in range(4)]
            heads = [head for each in await asyncio.gather(*together) for head in each]
            assert [status for status, _ in heads] == [200] * 40
            over, other = await answers(port, "127.0.0.1", [TICKER, OPENAPI])
            assert (over[0], other[0], over[1]["retry-after"]) == (429, 429, "1")
            [(status, _)] = await answers(port, "127.0.0.2", [TICKER])
            assert status == 200  # another IP has its own bucket
            clock[0] += 50_000  # half a token back: one read
            [(ok, _), (limited, _)] = await answers(port, "127.0.0.1", [TICKER, TICKER])
            assert (ok, limited) == (200, 429)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.1", 0)
            )
            writer.write(TICKER)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            error = msgspec.json.decode(await reader.readexactly(length))
            writer.close()
            assert error["error"]["name"] == "RATE_LIMITED" and error["retry_after_ms"] == 50
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


OPENAPI = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"


def test_behind_a_trusted_proxy_unsigned_rest_requests_are_charged_to_the_forwarded_client(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """From a trusted proxy, REST's unsigned requests are charged to the client its
    `X-Forwarded-For` names (an IPv6 one by its /64), not to the proxy shared by all."""
    from gateway import rest

    clock = [time.time_ns() // 1_000]
    monkeypatch.setattr(rest, "now_us", lambda: clock[0])

    async def scenario() -> None:
        server, port = await start(
            tmp_path, 10, 100, trusted_proxies=("127.0.0.1",), unsigned_rate_per_ip_per_s=10
        )
        try:
            for client, neighbour in (("203.0.113.7", "203.0.113.8"), ("2001:db8::1", None)):
                heads = await answers(port, "127.0.0.1", [forwarded(TICKER, client)] * 41)
                assert [status for status, _ in heads[-2:]] == [200, 429], client
                if neighbour is not None:
                    [(status, _)] = await answers(port, "127.0.0.1", [forwarded(TICKER, neighbour)])
                    assert status == 200  # another client behind the same proxy
            [(status, _)] = await answers(port, "127.0.0.1", [forwarded(TICKER, "2001:db8::2")])
            assert status == 429  # the same /64 as 2001:db8::1
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def forwarded(request: bytes, client: str) -> bytes:
    """`request` as a reverse proxy sends it on: `X-Forwarded-For` naming `client`."""
    line_end = request.index(b"\r\n") + 2
    return request[:line_end] + f"X-Forwarded-For: {client}\r\n".encode() + request[line_end:]


def test_behind_a_trusted_proxy_the_page_files_are_charged_to_the_forwarded_client(
    tmp_path: Path, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind a reverse proxy every client had the proxy's IP: one page bucket for them
    all. From a peer in `[limits] trusted_proxies` the client is the last untrusted address
    of `X-Forwarded-For` (a client's own header, left of it, changes nothing); from any
    other peer the header is ignored. The connection caps stay per TCP peer; the log names
    the client."""
    from gateway import connection_handler
    from gateway.limits import PAGE_FILES_BURST

    clock = [time.time_ns() // 1_000]
    monkeypatch.setattr(connection_handler, "now_us", lambda: clock[0])

    async def scenario() -> None:
        server, port = await start(tmp_path, 10, 100, trusted_proxies=("127.0.0.1",))
        try:
            first = forwarded(PAGE, "203.0.113.7")
            heads = await answers(port, "127.0.0.1", [first] * (PAGE_FILES_BURST + 1))
            assert [status for status, _ in heads[-2:]] == [200, 429]
            spoofed = forwarded(PAGE, "198.51.100.1, 203.0.113.7")  # the same client
            [(status, _)] = await answers(port, "127.0.0.1", [spoofed])
            assert status == 429
            [(status, _)] = await answers(port, "127.0.0.1", [forwarded(PAGE, "203.0.113.8")])
            assert status == 200  # another client behind the same proxy: its own bucket
            untrusted = [forwarded(PAGE, f"198.51.100.{n}") for n in range(PAGE_FILES_BURST + 1)]
            heads = await answers(port, "127.0.0.2", untrusted)  # the header ignored
            assert [status for status, _ in heads[-2:]] == [200, 429]
            assert server._server is not None
            caplog.set_level(logging.INFO, "venue")
            (status, _), held = await opened(port, "127.0.0.1", forwarded(upgrade(), "203.0.113.9"))
            assert status == 101
            assert server._server.counts.open_from("127.0.0.1") == 1  # the cap: the TCP peer
            await until(lambda: any(r.msg == "connection opened" for r in caplog.records))
            [opening] = [r for r in caplog.records if r.msg == "connection opened"]
            assert opening.peer.startswith("203.0.113.9 via 127.0.0.1:"), opening.peer
            held[1].close()
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def test_a_refused_connection_that_never_ends_its_request_is_closed_at_its_short_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection over the caps has `CONNECTION_REFUSED_TIMEOUT_S` to send the request its
    503 answers. Its request line handed it to plain HTTP, whose keep-alive deadline (15 s)
    replaced that one: a peer sending heads it never ends held refused slots 15 s each (a
    reviewer's finding). Here the refusal's deadline is short and the keep-alive's long: the
    connection must end at the first."""
    from gateway import http, transport

    monkeypatch.setattr(transport, "CONNECTION_REFUSED_TIMEOUT_S", 0.5)
    monkeypatch.setattr(http, "KEEPALIVE_IDLE_S", 3_600)

    async def scenario() -> None:
        server, port = await start(tmp_path, per_ip_max=1, total_max=100)
        try:
            (status, _), (_, held) = await opened(port, "127.0.0.1", PAGE)
            assert status == 200
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\n")  # a request line, its head never ended
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), TEST_TIMEOUT_S) == b""  # closed
            writer.close()
            held.close()
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 2 * TEST_TIMEOUT_S))


def through_two_proxies(request: bytes, client: str, *, spoofed: str | None = None) -> bytes:
    """`request` as the second of two reverse proxies sends it on: the first (10.0.0.5)
    added a line naming `client`, the second its own naming the first; a client's own line
    (`spoofed`) comes before both."""
    lines = [f"X-Forwarded-For: {spoofed}\r\n"] if spoofed else []
    lines += [f"X-Forwarded-For: {client}\r\n", "X-Forwarded-For: 10.0.0.5\r\n"]
    line_end = request.index(b"\r\n") + 2
    return request[:line_end] + "".join(lines).encode() + request[line_end:]


def test_behind_a_chain_of_proxies_every_forwarded_for_line_is_read(
    tmp_path: Path, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Two trusted proxies, each adding its own `X-Forwarded-For` line: the lines are one
    list, in order, and the client is its rightmost address that is not a trusted proxy.
    (Before, only the last line was read: it names the first proxy, trusted, so every client
    behind it was that proxy, and shared its buckets.) REST's unsigned reads, the web page's
    files and a websocket's log line alike; REST's clock and the page's are frozen."""
    from gateway import connection_handler, rest
    from gateway.limits import PAGE_FILES_BURST

    clock = [time.time_ns() // 1_000]
    monkeypatch.setattr(rest, "now_us", lambda: clock[0])
    monkeypatch.setattr(connection_handler, "now_us", lambda: clock[0])

    async def scenario() -> None:
        server, port = await start(
            tmp_path,
            10,
            100,
            trusted_proxies=("127.0.0.1", "10.0.0.0/8"),
            unsigned_rate_per_ip_per_s=10,
        )
        try:
            reads = [through_two_proxies(TICKER, "203.0.113.7")] * 41  # 20 tokens: 40 reads
            heads = await answers(port, "127.0.0.1", reads)
            assert [status for status, _ in heads[-2:]] == [200, 429]
            spoofed = through_two_proxies(TICKER, "203.0.113.7", spoofed="198.51.100.1")
            [(status, _)] = await answers(port, "127.0.0.1", [spoofed])
            assert status == 429  # the same client: a line of its own changes nothing
            [(status, _)] = await answers(
                port, "127.0.0.1", [through_two_proxies(TICKER, "203.0.113.8")]
            )
            assert status == 200  # another client behind the same two proxies
            pages = [through_two_proxies(PAGE, "203.0.113.7")] * (PAGE_FILES_BURST + 1)
            heads = await answers(port, "127.0.0.1", pages)
            assert [status for status, _ in heads[-2:]] == [200, 429]
            [(status, _)] = await answers(
                port, "127.0.0.1", [through_two_proxies(PAGE, "203.0.113.8")]
            )
            assert status == 200
            caplog.set_level(logging.INFO, "venue")
            request = through_two_proxies(upgrade(), "203.0.113.9")
            (status, _), held = await opened(port, "127.0.0.1", request)
            assert status == 101
            await until(lambda: any(r.msg == "connection opened" for r in caplog.records))
            [opening] = [r for r in caplog.records if r.msg == "connection opened"]
            assert opening.peer.startswith("203.0.113.9 via 127.0.0.1:"), opening.peer
            held[1].close()
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


BALANCES = b"GET /api/v1/balances HTTP/1.1\r\nHost: x\r\n\r\n"  # private: signed or 401


def badly_signed(request: bytes, ts_us: int) -> bytes:
    """`request` with every signing header, its signature wrong: 401 `BAD_SIGNATURE`."""
    headers = (
        f"X-API-Key: demo-mm-alpha\r\nX-Timestamp: {ts_us}\r\nX-Nonce: n-{os.urandom(6).hex()}"
        "\r\nX-Signature: 00\r\n"
    )
    line_end = request.index(b"\r\n") + 2
    return request[:line_end] + headers.encode() + request[line_end:]


def test_private_requests_refused_for_their_signature_are_charged_to_the_client_ip(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A request to a private route unsigned or badly signed (401) costs its IP's bucket
    too, as an unsigned one does, all the IP's connections together: 10 tokens a second, 20
    at once, so 40 refusals (0.5 each) from four connections, each far under its own bucket,
    then 429 with `Retry-After` (a public read too: the same bucket). Another IP is
    unaffected. (Before: charged per connection only, so one IP's 256 connections got 256
    times a connection's rate of 401s, an HMAC each.) REST's clock is frozen."""
    from gateway import rest

    clock = [time.time_ns() // 1_000]
    monkeypatch.setattr(rest, "now_us", lambda: clock[0])

    async def scenario() -> None:
        server, port = await start(tmp_path, 10, 100, unsigned_rate_per_ip_per_s=10)
        try:
            refusals = [BALANCES, badly_signed(BALANCES, clock[0])] * 5
            together = [answers(port, "127.0.0.1", refusals) for _ in range(4)]
            heads = [head for each in await asyncio.gather(*together) for head in each]
            assert [status for status, _ in heads] == [401] * 40
            wrong = badly_signed(BALANCES, clock[0])
            over, read = await answers(port, "127.0.0.1", [wrong, TICKER])
            assert (over[0], read[0]) == (429, 429)
            assert over[1]["retry-after"] == "1"
            [(status, _)] = await answers(port, "127.0.0.2", [BALANCES])
            assert status == 401  # another IP has its own bucket
            clock[0] += 50_000  # half a token back: one refusal
            [(status, _), (limited, _)] = await answers(port, "127.0.0.1", [BALANCES, BALANCES])
            assert (status, limited) == (401, 429)
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def test_a_spent_client_ip_is_answered_429_before_any_signature_is_checked(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Once an IP has spent its bucket of unsigned and refused requests, its private
    requests are answered 429 before their signature is checked: a flood of bad signatures
    costs no HMAC past the bucket (before: 429 too, but each after its HMAC). A trader on
    that IP meets the same 429 until the bucket refills; another IP is unaffected."""
    from gateway import rest

    clock = [time.time_ns() // 1_000]
    monkeypatch.setattr(rest, "now_us", lambda: clock[0])

    async def scenario() -> None:
        server, port = await start(tmp_path, 10, 100, unsigned_rate_per_ip_per_s=10)
        checked = []
        check = server.auth.check
        monkeypatch.setattr(server.auth, "check", lambda *a: checked.append(a[0]) or check(*a))
        try:
            reads = await answers(port, "127.0.0.1", [TICKER] * 40)  # half a token each: spent
            assert [status for status, _ in reads] == [200] * 40
            wrong = [badly_signed(BALANCES, clock[0]) for _ in range(10)]
            assert [status for status, _ in await answers(port, "127.0.0.1", wrong)] == [429] * 10
            assert checked == []
            trader = RestClient(f"http://127.0.0.1:{port}", *KEYS["taker"], refused_retries_max=0)
            limited = await asyncio.to_thread(trader.get, "/api/v1/balances")
            assert limited.status == 429 and checked == []
            [(status, _)] = await answers(port, "127.0.0.2", [badly_signed(BALANCES, clock[0])])
            assert status == 401 and checked == ["demo-mm-alpha"]  # another IP: checked
            clock[0] += 200_000  # two tokens back
            answer = await asyncio.to_thread(trader.get, "/api/v1/balances")
            assert answer.status == 200, answer.body
            trader.close()
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def test_a_traders_signed_read_gets_a_connection_when_the_public_places_are_taken(
    tmp_path: Path,
) -> None:
    """The REST client signs every request when it has a key: a trader whose new connection
    starts with a public read (the ticker) is a trader when its signature is good, so it is
    served from the reserve when no public place is left, and the connection stays a
    trader's. A read signed badly is refused the place. (Before: 503 TOO_MANY_CONNECTIONS
    for the trader's signed read, and after each reconnect again.)"""
    from gateway import rest

    async def scenario() -> None:
        server, port = await start(tmp_path, 10, 4, connections_reserved_pct=50)
        held = []
        try:
            for ip in ("127.0.0.2", "127.0.0.3"):
                (status, _), (_, writer) = await opened(port, ip, upgrade())
                assert status == 101
                held.append(writer)
            now = rest.now_us()
            assert await refused_in_json(port, "127.0.0.4", badly_signed(TICKER, now))
            trader = RestClient(f"http://127.0.0.1:{port}", *KEYS["taker"], refused_retries_max=0)
            read = await asyncio.to_thread(trader.get, "/api/v1/ticker")
            assert read.status == 200, read.body
            assert server._server is not None and server._server.counts.public == 2
            answer = await asyncio.to_thread(trader.get, "/api/v1/balances")
            assert answer.status == 200, answer.body
            trader.close()
        finally:
            for writer in held:
                writer.close()
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def test_a_connection_refused_429_before_its_signature_waits_no_longer_in_the_reserve(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A private request refused 429 because its IP's bucket is spent, before its signature
    is read, leaves its connection public: it does not keep one of its IP's places waiting in
    the reserve (before: it kept it while it sent such a request every few seconds, past the
    ~29 s a connection waits there at most)."""
    from gateway import rest

    clock = [time.time_ns() // 1_000]
    monkeypatch.setattr(rest, "now_us", lambda: clock[0])

    async def scenario() -> None:
        server, port = await start(tmp_path, 100, 100, unsigned_rate_per_ip_per_s=10)
        assert server._server is not None
        counts = server._server.counts
        held = []
        try:
            await answers(port, "127.0.0.7", [TICKER] * 40)  # half a token each: spent
            for _ in range(3):
                (status, _), (_, writer) = await opened(
                    port, "127.0.0.7", badly_signed(BALANCES, clock[0])
                )
                assert status == 429
                held.append(writer)
            assert (counts.pending_from("127.0.0.7"), counts.public) == (0, 3)
        finally:
            for writer in held:
                writer.close()
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


class _ReplayedNonces:
    """A cluster's nonce store whose claims all say "used through another gateway" once the
    test lets them answer (`answer`)."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.asked = 0
        self.claimed = 0

    async def claim(self, api_key: str, nonce: str) -> bool:
        self.asked += 1
        await self.answer.wait()
        self.claimed += 1
        return False


def test_a_replay_refused_after_its_connection_closed_takes_no_public_place(
    tmp_path: Path,
) -> None:
    """On a cluster's gateway a signed request waits for its nonce's claim; when the claim
    says the nonce was used (`NONCE_REUSED`) after the client reset its connection, nothing
    is counted for the connection gone (before: a public place taken and never given back,
    so such replays could fill the public places)."""
    from gateway import rest

    async def scenario() -> None:
        server, port = await start(tmp_path, 100, 100)
        assert server._server is not None
        counts = server._server.counts
        nonces = _ReplayedNonces()
        server.dispatcher.logons.shared_nonces = nonces  # type: ignore[assignment]
        try:
            api_key, secret = KEYS["taker"]
            ts_us, nonce = rest.now_us(), f"n-{os.urandom(6).hex()}"
            sig = sign_request(
                secret, api_key, ts_us, nonce, 5000, "GET", "/api/v1/balances", "", b""
            )
            request = (
                f"GET /api/v1/balances HTTP/1.1\r\nHost: x\r\nX-API-Key: {api_key}\r\n"
                f"X-Timestamp: {ts_us}\r\nX-Nonce: {nonce}\r\nX-Recv-Window: 5000\r\n"
                f"X-Signature: {sig}\r\n\r\n"
            )
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request.encode())
            await writer.drain()
            await until(lambda: nonces.asked == 1)  # read, its nonce being claimed
            linger = struct.pack("ii", 1, 0)  # a reset, not a close: no half-open wait
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            writer.transport.abort()
            await until(lambda: counts.total == 0)
            nonces.answer.set()
            await until(lambda: nonces.claimed == 1)
            await asyncio.sleep(0.05)  # the claim's refusal handled
            assert (counts.total, counts.public, counts.pending) == (0, 0, 0)
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def test_public_connections_leave_a_reserve_for_trading_sessions(tmp_path: Path) -> None:
    """Of `connections_max` (20 here), `connections_reserved_pct` (10%, the default: 2) is
    kept for trading sessions: idle public connections (`/ws/public`, the web page, unsigned
    REST) fill only 18, and one more is refused 503 with `Retry-After` (REST's in its JSON
    words), while a `/ws/trade` session and a validly signed REST request still get in. A
    request refused for its signature on a connection with no place left is answered its
    401, and closed. The total cap still holds. (Before: the public connections filled all
    20, and no trader could connect until one of them closed.)"""

    async def scenario() -> None:
        server, port = await start(tmp_path, per_ip_max=10, total_max=20)
        held: list[asyncio.StreamWriter] = []
        try:
            for n in range(18):  # from three addresses (the per-IP cap is 10), not the SDKs'
                (status, _), (_, writer) = await opened(port, f"127.0.0.{2 + n % 3}", upgrade())
                assert status == 101, n
                held.append(writer)
            words = (
                "the venue has its most public connections (18; 2 more are kept for /ws/trade"
                " and signed REST); retry later\n"
            )
            assert await refused(port, "127.0.0.5", upgrade()) == words
            assert await refused(port, "127.0.0.5", PAGE) == words
            assert await refused_in_json(port, "127.0.0.5", TICKER) == words
            (status, _), (reader, writer) = await opened(port, "127.0.0.5", BALANCES)
            assert status == 401  # its refusal, not a 503: the client can mend it
            assert await asyncio.wait_for(reader.read(), 5) != b""  # the body, then EOF
            assert reader.at_eof()
            writer.close()
            trader = VenueClient(f"ws://127.0.0.1:{port}/ws/trade", refused_retries_max=0)
            await trader.connect()
            assert (await trader.logon(*KEYS["alpha"]))["account"] == 1
            rest_trader = RestClient(f"http://127.0.0.1:{port}", *KEYS["taker"])
            answer = await asyncio.to_thread(rest_trader.get, "/api/v1/balances")
            assert answer.status == 200, answer.body
            unsigned = await asyncio.to_thread(
                rest_trader.request, "GET", "/api/v1/ticker", signed=False
            )
            assert unsigned.status == 200  # on a trading session's connection: no place needed
            assert server._server is not None and server._server.counts.total == 20
            total = "the venue has its most connections (20); retry later\n"
            assert await refused(port, "127.0.0.5", upgrade()) == total
            held.pop().close()  # a public one closes: room for another
            await until(lambda: server._server is not None and server._server.counts.total == 19)
            (status, _), (_, writer) = await opened(port, "127.0.0.5", upgrade())
            assert status == 101
            held.append(writer)
            rest_trader.close()
            await trader.close()
        finally:
            for writer in held:
                writer.close()
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def test_the_reserve_is_configured_and_a_signed_request_gives_back_its_public_place(
    tmp_path: Path,
) -> None:
    """`[limits] connections_reserved_pct = 50` of 4: 2 public connections. A REST
    connection counted as public (an unsigned read) that then sends a validly signed request
    is a trading session's from then on, and gives its public place back."""

    async def scenario() -> None:
        server, port = await start(tmp_path, 10, 4, connections_reserved_pct=50)
        try:
            (status, _), (_, public) = await opened(port, "127.0.0.2", upgrade())
            assert status == 101
            trader = RestClient(f"http://127.0.0.1:{port}", *KEYS["taker"])
            read = await asyncio.to_thread(trader.request, "GET", "/api/v1/ticker", signed=False)
            assert read.status == 200  # the second public connection
            words = (
                "the venue has its most public connections (2; 2 more are kept for /ws/trade"
                " and signed REST); retry later\n"
            )
            assert await refused(port, "127.0.0.3", upgrade()) == words
            answer = await asyncio.to_thread(trader.get, "/api/v1/balances")
            assert answer.status == 200  # on the same connection: now a trading session's
            assert server._server is not None and server._server.counts.public == 1
            (status, _), (_, again) = await opened(port, "127.0.0.3", upgrade())
            assert status == 101  # its place
            trader.close()
            for writer in (public, again):
                writer.close()
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


TRADE = "/ws/trade"
PENDING_WORDS = (
    "the venue has its most public connections (10), and at most 2 connections from one"
    " address may wait to log on in the 10 kept for /ws/trade and signed REST; retry later\n"
)


async def fill_public(port: int, held: list[asyncio.StreamWriter]) -> None:
    """Take the 10 public places of a venue of 20 at 50% (two addresses of 5)."""
    for n in range(10):
        (status, _), (_, writer) = await opened(port, f"127.0.0.{2 + n % 2}", upgrade())
        assert status == 101, n
        held.append(writer)


def test_connections_that_never_log_on_use_the_reserve_only_within_their_ips_allowance(
    tmp_path: Path,
) -> None:
    """A `/ws/trade` connection that has not logged on, or one that has sent no request yet,
    waits in the reserve only within its IP's `[limits] pending_per_ip_max` (2 here); past
    it, with the public places full, it is refused 503 with `Retry-After` at its first
    request, while a trader from another address still logs on. (Before: such connections
    took reserve places until it was full, each for 10 s or more: ~35 a second from 4
    addresses kept a reserve of 1,000 full with no credentials.)"""

    async def scenario() -> None:
        server, port = await start(
            tmp_path, 50, 20, connections_reserved_pct=50, pending_per_ip_max=2
        )
        held: list[asyncio.StreamWriter] = []
        try:
            await fill_public(port, held)
            _, silent = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.6", 0)
            )  # sends nothing: waits in the reserve too
            held.append(silent)
            (status, _), (_, writer) = await opened(port, "127.0.0.6", upgrade(TRADE))
            assert status == 101
            held.append(writer)
            for _ in range(3):  # the flood: no more of the reserve
                assert await refused(port, "127.0.0.6", upgrade(TRADE)) == PENDING_WORDS
            assert await refused(port, "127.0.0.6", TICKER) != ""  # nor as public: none free
            assert server._server is not None
            counts = server._server.counts
            assert (counts.pending_from("127.0.0.6"), counts.total) == (2, 12)
            trader = VenueClient(f"ws://127.0.0.1:{port}/ws/trade", refused_retries_max=0)
            await trader.connect()
            assert (await trader.logon(*KEYS["alpha"]))["account"] == 1
            assert counts.pending_from("127.0.0.1") == 0  # a trading session's now
            await trader.close()
        finally:
            for writer in held:
                writer.close()
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


def test_a_logon_or_a_close_frees_the_allowance_and_the_counts_return_to_zero(
    tmp_path: Path,
) -> None:
    """An IP's allowance in the reserve (`pending_per_ip_max`, 2 here) is freed when one of
    its connections logs on or closes; past it, a connection sits in a public place while
    one is free and leaves it at logon. After a mix of closes (silent, mid-request, not
    logged on, logged on, public, REST) every count is back to 0: nothing leaks."""

    async def scenario() -> None:
        server, port = await start(
            tmp_path, 50, 20, connections_reserved_pct=50, pending_per_ip_max=2
        )
        assert server._server is not None
        counts = server._server.counts
        ip = "127.0.0.1"  # the SDK's
        held: list[asyncio.StreamWriter] = []
        try:
            _, silent = await asyncio.open_connection("127.0.0.1", port)
            half = (await asyncio.open_connection("127.0.0.1", port))[1]
            half.write(b"GET /ws/trade HTTP/1.1\r\nHost")  # a head never finished
            await until(lambda: counts.pending_from(ip) == 2)
            traders = [VenueClient(f"ws://127.0.0.1:{port}/ws/trade") for _ in range(2)]
            await traders[0].connect()  # past the allowance: a public place, one is free
            await until(lambda: counts.public == 1)
            for n in range(9):  # the rest of the public places
                (status, _), (_, writer) = await opened(port, "127.0.0.2", upgrade())
                assert status == 101, n
                held.append(writer)
            assert await refused(port, ip, upgrade(TRADE)) == PENDING_WORDS
            silent.close()  # a close frees its place in the allowance
            await until(lambda: counts.pending_from(ip) == 1)
            await traders[1].connect()
            assert await refused(port, ip, upgrade(TRADE)) == PENDING_WORDS
            assert (await traders[1].logon(*KEYS["alpha"]))["account"] == 1
            assert counts.pending_from(ip) == 1  # so does a logon
            (status, _), (_, writer) = await opened(port, ip, upgrade(TRADE))
            assert status == 101
            held.append(writer)
            assert (await traders[0].logon(*KEYS["beta"]))["account"] == 2
            assert counts.public == 9  # the logon gave back its public place
            (status, _), (_, public) = await opened(port, "127.0.0.3", upgrade())
            assert status == 101
            held.append(public)
            half.close()  # mid-request: a place in the allowance again, for a signed request
            await until(lambda: counts.pending_from(ip) == 1)
            rest_trader = RestClient(f"http://127.0.0.1:{port}", *KEYS["taker"])
            assert (await asyncio.to_thread(rest_trader.get, "/api/v1/balances")).status == 200
            assert counts.pending_from(ip) == 1  # a trading session's: it left the allowance
            rest_trader.close()
            for trader in traders:
                await trader.close()
        finally:
            for writer in held:
                writer.close()
        await until(lambda: (counts.total, counts.public, counts.pending) == (0, 0, 0))
        assert counts._pending_per_ip == {}
        await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))
