"""`venue bench ws-layer`: the server CPU one small text frame costs in each websocket layer.

Owns a micro-benchmark of the inbound path below the venue: a server process that answers
every text message with one small pre-framed text message, on one of three layers, and a
lean client (`bench.wsclient`) on loopback that keeps `WINDOW` messages in flight until N
are answered. The number is the server's CPU time (/proc, user + system) over the window
divided by N: what the layer itself costs per request and answer, with no venue work. /proc
counts it in 10 ms ticks: each layer's `cpu_error_percent_max` says how far off that can put
its figures, and a line on stderr says when it passes ±10% and how many `--frames` would do.
On a terminal a bar on stderr counts the runs.

Layers: `websockets` — the library's asyncio server as the venue used it (`async for` per
connection, `transport.writelines` of a pre-built frame); `sansio` — the library's
`ServerProtocol` driven from a plain `asyncio.Protocol` (`gateway.transport`); `venue` — the
venue's own server (`gateway.server.VenueServer` on venue.toml with the rate limits raised,
a fresh data dir) answering each `ping` request through its whole request path (transport,
`wire.decode`, rate limit, dispatch, the outbox), so the layer's share of a real request
shows beside it; `picows` — the Cython library, if installed (`pip install picows`). All on
uvloop, as the venue runs. The server runs this file as a script (`--serve`), so a copy of
it measures another checkout too (run from that checkout's root).
"""

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import server_process, wsclient
from cli import progress
from cli.failures import CommandFailed, OneLineParser, run_main

FRAMES_DEFAULT = 50_000
WINDOW = 64  # messages in flight: enough to batch reads, like a busy taker
REQUEST = b'{"id":1,"method":"ping","params":{}}'
ANSWER = b'{"id":1,"result":{}}'
LAYERS = ("websockets", "sansio", "venue", "picows")
CLOCK_TICKS_S = os.sysconf("SC_CLK_TCK")
VENUE_CONFIG = Path("venue.toml")  # the venue layer's, relative to the working directory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--frames", type=int, default=FRAMES_DEFAULT, help=f"per run (default {FRAMES_DEFAULT:,})"
    )
    parser.add_argument("--runs", type=int, default=3, help="the median is reported (default 3)")
    available = [layer for layer in LAYERS if layer != "picows" or _has_picows()]
    parser.add_argument(
        "--layers",
        default=",".join(available),
        help=f"comma-separated, of {', '.join(LAYERS)} (default: every one installed)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="no bar on stderr (stdout is the one JSON line either way, the lines on stderr)",
    )
    parser.add_argument("--serve", choices=LAYERS, help=argparse.SUPPRESS)
    parser.add_argument("--serve-dir", type=Path, help=argparse.SUPPRESS)  # the venue's data


def _checked(args: argparse.Namespace) -> list[str]:
    """The layers to measure; a count below one or a layer not here is refused."""
    if args.frames < 1 or args.runs < 1:
        raise CommandFailed("--frames and --runs must be at least 1")
    layers = [layer.strip() for layer in args.layers.split(",") if layer.strip()]
    for layer in layers:
        if layer not in LAYERS:
            raise CommandFailed(f"--layers: no layer {layer!r} (choose from {', '.join(LAYERS)})")
        if layer == "picows" and not _has_picows():
            raise CommandFailed("--layers: picows is not installed here (pip install picows)")
    if not layers:
        raise CommandFailed("--layers: name at least one layer")
    if "venue" in layers and not VENUE_CONFIG.is_file():
        raise CommandFailed(
            f"the venue layer runs {VENUE_CONFIG} of the working directory, and there is none:"
            " run from the repository's root, or leave it out (--layers websockets,sansio)"
        )
    return layers


def _has_picows() -> bool:
    """picows is not a dependency of the venue: measured only where it is installed."""
    return importlib.util.find_spec("picows") is not None


def run(args: argparse.Namespace) -> int:
    if args.serve:
        server_process.run_async(_serve(args.serve, args.serve_dir))
        return 0
    layers = _checked(args)
    samples: dict[str, list[dict[str, float]]] = {layer: [] for layer in layers}
    # a bar on a terminal, moved between runs (each a server of its own), never inside one
    bar = {"total": args.runs * len(layers), "desc": "ws-layer", "unit": "run"}
    with progress.bar(args.json, **bar) as shown:
        for _ in range(args.runs):  # interleaved: drift in the machine's load hits every layer
            for layer in layers:
                shown.set_description_str(f"ws-layer: {layer}")
                samples[layer].append(server_process.run_async(_measure(layer, args.frames)))
                shown.update(1)
    table = {layer: _row(runs) for layer, runs in samples.items()}
    for layer, row in table.items():
        runs = ", ".join(f"{value:g}" for value in row["runs"])
        print(
            f"ws-layer {layer:<11} {row['server_cpu_us_per_frame']:g} µs of server CPU a frame"
            f" (runs: {runs})",
            file=sys.stderr,
        )
    if warning := _unreliable(table, args.frames):
        print(warning, file=sys.stderr)
    print(json.dumps(table))
    return 0


def _row(runs: list[dict[str, float]]) -> dict[str, Any]:
    """A layer's median CPU per frame, each run's, and how far off the clock tick can put
    them (the worst run's error, in %; None if a run counted no tick at all)."""
    per_frame = [run["server_cpu_us_per_frame"] for run in runs]
    errors = [server_process.cpu_error_percent(run["server_cpu_s"]) for run in runs]
    return {
        "server_cpu_us_per_frame": round(statistics.median(per_frame), 2),
        "runs": [round(value, 2) for value in per_frame],
        "cpu_error_percent_max": None if None in errors else max(e for e in errors if e),
    }


def _unreliable(table: dict[str, dict[str, Any]], frames: int) -> str:
    """A line saying the figures are too few frames' to trust, and how many would do; ""
    when every layer's are within `server_process.CPU_ERROR_PERCENT_RELIABLE`. Few frames
    cost the server a few ms of CPU, which /proc counts in 10 ms ticks: they read 0.0."""
    reliable_at = server_process.CPU_ERROR_PERCENT_RELIABLE
    errors = [row["cpu_error_percent_max"] for row in table.values()]
    if all(error is not None and error <= reliable_at for error in errors):
        return ""
    tick_ms = server_process.cpu_tick_s() * 1_000
    if None in errors:
        off, more = "all of them (a run counted no tick)", f"{FRAMES_DEFAULT:,} (the default)"
    else:
        worst = max(error for error in errors if error is not None)
        off, more = f"±{worst:g}% of them", f"{math.ceil(frames * worst / reliable_at):,}"
    return (
        f"ws-layer: figures unreliable: the kernel counts CPU time in {tick_ms:g} ms ticks, which"
        f" over {frames:,} frames can be {off}; --frames {more} or more would bring"
        f" that within ±{reliable_at:g}%"
    )


# ----------------------------------------------------------------- the client side


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_S  # utime + stime


async def _measure(layer: str, frames: int) -> dict[str, Any]:
    directory = tempfile.TemporaryDirectory(prefix="venue-bench-ws-layer-")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--serve", layer,
        "--serve-dir", directory.name,
        stdout=asyncio.subprocess.PIPE,
        env=os.environ | {"PYTHONPATH": os.getcwd()},  # this checkout's packages
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await process.stdout.readline()
        if not line.strip():  # it ended before listening (its error is on stderr above)
            raise SystemExit(f"ws-layer: the {layer} server did not start")
        port = int(line)
        done = asyncio.get_running_loop().create_future()
        counts = {"sent": 0, "answered": 0}

        def on_message(_payload: bytes) -> None:
            counts["answered"] += 1
            if counts["sent"] < frames:
                counts["sent"] += 1
                connection.send(REQUEST)
            elif counts["answered"] == frames and not done.done():
                done.set_result(None)

        # the venue's /ws/trade closes a connection not logged on within 10 s; ping is public
        path = "/ws/public" if layer == "venue" else "/ws/trade"
        connection = await wsclient.connect(f"ws://127.0.0.1:{port}{path}", on_message)
        before = _cpu_s(process.pid)
        for _ in range(WINDOW):
            counts["sent"] += 1
            connection.send(REQUEST)
        await done
        spent = _cpu_s(process.pid) - before
        connection.close()
        return {"server_cpu_us_per_frame": spent * 1e6 / frames, "server_cpu_s": spent}
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it may end as we stop it
                process.terminate()
        await process.wait()
        directory.cleanup()


# ----------------------------------------------------------------- the servers


ANSWER_FRAME = bytes((0x81, len(ANSWER))) + ANSWER


async def _serve(layer: str, directory: Path | None) -> dict[str, Any]:
    if layer == "venue":
        assert directory is not None, "the venue needs a data dir"
        port = await _venue(directory)
    else:
        port = await {"websockets": _websockets, "sansio": _sansio, "picows": _picows}[layer]()
    print(port, flush=True)
    await asyncio.Event().wait()  # until the client terminates us
    return {}


async def _websockets() -> int:
    from websockets.asyncio.server import ServerConnection, serve

    async def handle(websocket: ServerConnection) -> None:
        async for _frame in websocket:
            websocket.transport.writelines([ANSWER_FRAME])

    server = await serve(handle, "127.0.0.1", 0, max_size=256 * 1024, compression=None)
    return int(next(iter(server.sockets)).getsockname()[1])


async def _sansio() -> int:
    from gateway import transport

    class Handler:
        def on_open(self, connection: transport.Connection) -> None:
            pass

        def on_frame(self, connection: transport.Connection, message: str | bytes) -> None:
            connection.send_frames([ANSWER_FRAME])

        def on_close(self, connection: transport.Connection) -> None:
            pass

        def on_http(self, connection: transport.Connection, request: Any) -> None:
            return None

    server = await transport.serve(Handler(), "127.0.0.1", 0, routes=("/ws/trade",))
    return int(next(iter(server.sockets)).getsockname()[1])


async def _venue(directory: Path) -> int:
    from core import config as venue_config
    from gateway.server import VenueServer

    config = server_process.unlimited_config(VENUE_CONFIG, directory)
    server = VenueServer(venue_config.load(config), directory / "data")
    return await server.start("127.0.0.1", 0)


async def _picows() -> int:
    import picows

    class Listener(picows.WSListener):
        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type == picows.WSMsgType.TEXT:
                frame.get_payload_as_bytes()  # the message, as the venue would take it
                transport.underlying_transport.writelines([ANSWER_FRAME])

    server = await picows.ws_create_server(lambda _request: Listener(), "127.0.0.1", 0)
    return int(next(iter(server.sockets)).getsockname()[1])


if __name__ == "__main__":  # the server side, started by `_measure`; or the bench, by hand
    _parser = OneLineParser()
    add_arguments(_parser)
    _args = _parser.parse_args()
    sys.exit(run_main(_parser.prog, lambda: run(_args)))
