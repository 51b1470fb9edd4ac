"""The end-to-end benchmark: `venue bench e2e` — the whole venue under a trading load.

Owns the run: a `venue serve` on its embedded defaults (venue.toml, with the rate limits
raised out of the way and benchmark accounts added) in its own process, then client
processes (`bench.e2e_clients`): market makers requoting a ladder with `quote.mass`, takers
sending marketable IOC orders (one per message, or `--batch` of them in `order.batch`), and
passive subscribers following the book and the trades. Makers and takers send open loop on a
fixed timetable; latency counts from the scheduled time.

`--rate R` is the order actions offered per second, all clients together: the share
`--taker-share` of them are the takers' marketable orders, the rest the makers' requotes
(two actions each: a bid and an ask), as on a real venue where quotes far outnumber trades.
`--symbols N` spreads the same rate over N stocks (AAPLx-USD, then `BENCH01x-USD`... that the
run lists in its server's config, each priced as AAPLx-USD and funded in every bench account):
makers requote every level of every symbol, takers trade them round-robin, and each subscriber
follows the book and the trades of all N, one subscribe per channel.
Makers requote at least `MAKER_REQUESTS_MIN_PER_S` times a second each, so the takers always
find liquidity (where a maker's share of the rate falls below it, at low rates or with
`--taker-share 1`, the floor is offered on top: the summary's share is of what was offered).
`--max` sweeps: from `--start-rate`, each step `SWEEP_FACTOR` times the last, until a step
breaks a bound (p99 above `--p99-bound-ms`, any action rejected or unanswered, or less than
`SUSTAIN_FRACTION` of the offered rate acknowledged), then `SWEEP_REFINE_STEPS` halvings of
the gap between the last step that held and the one that broke; the result is the highest
step that held, with every step listed.

Counts: `sent` = order actions sent (a batch's ops, a quote's sides); each is `acked` or
`rejected` (by error name in `errors`), or `unanswered` if no answer came within the drain
time. `acked_per_sec` divides by the window, or by the time to the last answer if a backlog
drained after it. `book_updates_per_sec` = book messages (snapshots and updates, one per
symbol whose book changed in a publication) delivered per second, summed over subscribers and
symbols (`book_messages_by_symbol` splits the count); `trade_messages_per_sec` likewise;
`subscriber_frames_per_sec` the socket messages that carried them (packed: a publication's
messages for one subscriber share a frame). Server CPU is user + system time over the measured
window (it can pass 100%: the ledger store writes in a thread, and over NATS the journal);
`server_cpu_us_per_action` is that CPU per acknowledged action (CPU seconds per second of the
window over `acked_per_sec`, in µs): the cost of an action, whatever the rate;
`server_cpu_by_thread` splits it by thread (the loop, which commits the file journal, the
ledger store...), user and system, from /proc/PID/task (Linux; a thread that ended in the
window is in the process's figure only, and each thread's clock ticks round on their own),
with each thread's read and write system calls and context switches per action (counts:
they survive noise that moves times). RSS is the server's peak. /proc counts CPU time in clock
ticks (10 ms): over a short window (under a second or two) that error is a large share of the
figures, so `server_cpu_error_percent_max` says how far off they can be, and
`server_cpu_reliable` is false, with a line in the summary, once that passes
`server_process.CPU_ERROR_PERCENT_RELIABLE`. Each thread of `server_cpu_by_thread` has its own
(`error_percent_max`, `reliable`: two ticks over that thread's CPU), marked in the summary
when unreliable: a quiet thread's figures are coarse in a run whose total is not. Such a run
is still a fair smoke test, its latencies and rates stand, so it is not refused.
`client_cpu_percent` is each role's client processes' CPU over their window (% of one core,
summed), and `client_process_cpu_percent_max` the busiest process's: a subscriber process
near 100% cannot read faster, so the book rate is then the clients' limit.
The clients open packed connections (`?pack=1`); `client_messages_per_frame` is how many
messages each role's frames held on average.
`--profile` records where that CPU goes (`bench.profiling`). On a terminal each step shows
a bar on stderr (server start, clients connecting, the run, the clients' results, the
report); `--json` makes stdout one JSON line.
"""

import argparse
import asyncio
import dataclasses
import itertools
import json
import math
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import e2e_clients, e2e_report, environment, profiling, server_process, stats
from bench.cluster_process import ClusterServer
from bench.server_process import ServerProcess, ThreadCpu
from cli import progress
from cli.failures import CommandFailed

DEFAULT_DURATION_S = 10.0
DEFAULT_RATE = 2_000
DURATION_S_MAX = 600.0  # latency samples are kept in memory: ten minutes is plenty
RATE_MAX = 1_000_000
BATCH_MAX = 20  # PROTOCOL: order.batch carries up to 20 ops
MAKERS_MAX = TAKERS_MAX = 16
SUBSCRIBERS_MAX = 5_000
SUBSCRIBERS_PER_PROCESS = 250  # a process reads its connections on one core
# A maker's bids on every level of every symbol hold 32 x 3 x 5 x ~187 USD, ~90,000 of the
# 100,000 USD each bench account gets (the sample's USD reserve allows up to ~156,000 each
# for 16 makers and 16 takers); a subscriber's 2 x 32 subscriptions are well within the
# gateway's 256.
SYMBOLS_MAX = 32
BENCH_DEPOSIT_USD = "100000"
BENCH_DEPOSIT_STOCK = "1000"  # of each stock traded: a maker's asks hold 3 x 5 of it
BENCH_RESERVE_STOCK = "100000"  # each listed bench stock's attested reserve: every deposit
DEFAULT_TAKER_SHARE = 0.2
MAKER_REQUESTS_MIN_PER_S = 20.0  # each maker requotes at least this often: liquidity
MAKER_LEVELS = 3
SWEEP_FACTOR = 1.5
SWEEP_STEPS_MAX = 12
# After the first step that breaks, the gap to the last that held is halved this often: the
# rate reported is then at most an eighth of that rate (12.5%) below where the bound broke,
# not half of it (50%).
SWEEP_REFINE_STEPS = 2
SUSTAIN_FRACTION = 0.9
DEFAULT_P99_BOUND_MS = 50.0
GO_DELAY_S = 0.5  # between "go" and the first slot: every client has read it by then
CLIENT_SETUP_TIMEOUT_S = 45.0  # the clients give up on their own setup after 30 s
CLIENT_GRACE_S = 60.0  # after the duration: drain, report, exit
BENCH_ACCOUNT_BASE = 10_000  # ids of the benchmark's accounts, clear of the demo's
ROLES = ("maker", "taker", "subscriber")
PROGRESS_INTERVAL_S = 0.2  # how often the bars move: smooth enough, cheap for the loop
STEP_FORMAT = "{desc}: {n_fmt}/{total_fmt} [{elapsed}]"  # a one-shot step: done or not
RUN_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:g} s [{elapsed}{postfix}]"
RESULT_LINE_MAX = 1 << 30  # a client's result line carries every latency sample it took


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION_S,
        help=(
            f"seconds measured (with --max: each step's), at most {DURATION_S_MAX:g}"
            f" (default {DEFAULT_DURATION_S:g})"
        ),
    )
    load = parser.add_mutually_exclusive_group()
    load.add_argument(
        "--rate", type=float, default=None, help=f"order actions/s offered (default {DEFAULT_RATE})"
    )
    load.add_argument("--max", action="store_true", help="sweep the rate up until a bound breaks")
    parser.add_argument(
        "--start-rate", type=float, help=f"--max: first step (default {DEFAULT_RATE})"
    )
    parser.add_argument(
        "--makers", type=int, default=2, help=f"1 to {MAKERS_MAX} (default 2), one process each"
    )
    parser.add_argument(
        "--takers", type=int, default=2, help=f"1 to {TAKERS_MAX} (default 2), one process each"
    )
    parser.add_argument(
        "--subscribers",
        type=int,
        default=10,
        help=f"0 to {SUBSCRIBERS_MAX:,} (default 10), {SUBSCRIBERS_PER_PROCESS} a process",
    )
    parser.add_argument(
        "--symbols",
        type=int,
        default=1,
        help=f"stocks traded and followed, 1 to {SYMBOLS_MAX} (default 1: AAPLx-USD; more are"
        " listed as BENCH01x-USD...); subscribers follow every one's book and trades",
    )
    parser.add_argument(
        "--batch", type=int, default=1, help=f"takers' orders per order.batch, 1 to {BATCH_MAX}"
    )
    parser.add_argument(
        "--taker-share",
        type=float,
        default=DEFAULT_TAKER_SHARE,
        help=f"of the actions, above 0 to 1 (default {DEFAULT_TAKER_SHARE:g})",
    )
    parser.add_argument(
        "--p99-bound-ms",
        type=float,
        help=f"--max: a step's bound (default {DEFAULT_P99_BOUND_MS:g})",
    )
    parser.add_argument(
        "--aligned",
        action="store_true",
        help="start every trading client's timetable at once (as before 2026-12-05): their"
        " requests arrive together, fewer commits, more latency",
    )
    parser.add_argument(
        "--config", type=Path, default=Path("venue.toml"), help="the server's (default venue.toml)"
    )
    parser.add_argument(
        "--out", type=Path, default=e2e_report.RESULTS_DIR, help="results (default bench/results)"
    )
    parser.add_argument(
        "--json", action="store_true", help="stdout: one JSON line only (the summary: stderr)"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the venue as a local cluster: 1 core + 2 gateways on 3 NATS nodes (clients spread"
        " over the gateways; server CPU summed over every process)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the server (py-spy, else cProfile): a flame graph and a top-functions table",
    )


@dataclass(frozen=True)
class Load:
    """One step's parameters."""

    duration_s: float
    rate: float  # order actions offered per second, all clients together
    makers: int
    takers: int
    subscribers: int
    batch: int
    taker_share: float = DEFAULT_TAKER_SHARE
    aligned: bool = False  # every trading client's timetable from T: their requests coincide
    symbols: int = 1  # stocks traded (the rate is spread over them) and followed

    def taker_requests_per_sec(self) -> float:
        """Each taker's messages per second (`batch` orders each)."""
        return self.rate * self.taker_share / self.takers / self.batch

    def maker_requests_per_sec(self) -> float:
        """Each maker's quote.mass requests per second (a bid and an ask each)."""
        share = self.rate * (1 - self.taker_share) / self.makers / 2
        return max(MAKER_REQUESTS_MIN_PER_S, share)

    def offered_per_sec(self) -> float:
        return self.rate * self.taker_share + self.makers * self.maker_requests_per_sec() * 2


# ----------------------------------------------------------------- the accounts


def bench_accounts(load: Load) -> list[tuple[str, int, str, str]]:
    """(role, account id, key, secret) for every maker and taker."""
    accounts = []
    for role, count in (("maker", load.makers), ("taker", load.takers)):
        for index in range(count):
            number = BENCH_ACCOUNT_BASE + (0 if role == "maker" else 1_000) + index
            accounts.append((role, number, f"bench-{role}-{index}", f"bench-secret-{number}"))
    return accounts


def accounts_toml(accounts: list[tuple[str, int, str, str]], symbols: int = 1) -> str:
    """TOML appended to the config: the accounts and their keys, funded in USD and every
    stock of `symbols`. Their USD fits in what the sample reserves leave over (a reserve is
    attested once per start, so not raised)."""
    stocks = [symbol.removesuffix("-USD") for symbol in e2e_clients.bench_symbols(symbols)]
    deposits = ", ".join(
        [f'USD = "{BENCH_DEPOSIT_USD}"', *(f'{code} = "{BENCH_DEPOSIT_STOCK}"' for code in stocks)]
    )
    lines = ["\n# added by venue bench e2e"]
    for role, number, key, secret in accounts:
        lines.append(
            f'[[accounts]]\nid = {number}\nname = "bench-{role}-{number}"\njurisdiction = "DE"\n'
            f"kyc_approved = true\ndeposits = {{ {deposits} }}"
        )
        lines.append(
            f'[[api_keys]]\nkey = "{key}"\nsecret = "{secret}"\naccount = {number}\n'
            'scopes = ["read", "trade"]'
        )
    return "\n\n".join(lines) + "\n"


def listings_toml(symbols: int) -> str:
    """TOML appended to the config (before the accounts, which deposit them): the stocks
    after the first, each an asset, its reserve and its instrument, priced and ticked as
    AAPLx-USD so that every maker's ladder and taker's limit price fits every symbol."""
    lines = []
    for symbol in e2e_clients.bench_symbols(symbols)[1:]:
        code = symbol.removesuffix("-USD")
        lines += [
            f'[[assets]]\ncode = "{code}"\nscale = 6',
            f'[[reserves]]\nasset = "{code}"\namount = "{BENCH_RESERVE_STOCK}"',
            f'[[instruments]]\nsymbol = "{symbol}"\nkind = "equity"\nbase = "{code}"\n'
            'quote = "USD"\ntick = "0.01"\nstep = "0.000001"\nmin_qty = "0.000001"\n'
            'min_notional = "1"\nband_pct = "10"\nreference_price = "187.25"\n'
            "maker_fee_bps = 1\ntaker_fee_bps = 5",
        ]
    return "\n\n".join(["\n# listed by venue bench e2e --symbols", *lines]) + "\n" if lines else ""


# ----------------------------------------------------------------- the client processes


class ClientFailed(RuntimeError):
    """A client process did not start or did not report; the message has its log's end."""


class Client:
    """One client process and what it reported."""

    def __init__(self, role: str, argv: list[str], log: Path) -> None:
        self.role = role
        self.argv = argv
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.progress = 0
        self.result: dict[str, Any] | None = None

    async def start(self) -> None:
        command = [sys.executable, "-m", "bench.e2e_clients", self.role, *self.argv]
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=RESULT_LINE_MAX,
            )

    async def ready(self) -> None:
        try:
            async with asyncio.timeout(CLIENT_SETUP_TIMEOUT_S):
                message = await self.next_message()
        except TimeoutError:
            message = None
        if message is None or not message.get("ready"):
            raise ClientFailed(f"a {self.role} client failed to start:\n{self.tail()}")

    def go(self, start_wall: float) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(f"go {start_wall!r}\n".encode())

    async def follow(self) -> None:
        """Read progress until the result; then the process exits."""
        while (message := await self.next_message()) is not None:
            if "progress" in message:
                self.progress = message["progress"]
            elif "result" in message:
                self.result = message["result"]
        assert self.process is not None
        await self.process.wait()
        if self.result is None:
            raise ClientFailed(f"a {self.role} client ended without a result:\n{self.tail()}")

    async def next_message(self) -> dict[str, Any] | None:
        assert self.process is not None and self.process.stdout is not None
        line = await self.process.stdout.readline()
        message: dict[str, Any] | None = json.loads(line) if line else None
        return message

    async def kill(self) -> None:
        """Only a client still running: an error path."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-server_process.LOG_TAIL_CHARS :]


def clients_for(load: Load, urls: list[str], directory: Path) -> list[Client]:
    """The client processes, spread round-robin over `urls` (a cluster's gateways)."""
    clients = []
    spread = itertools.cycle(urls)
    accounts = bench_accounts(load)
    fastest = [load.maker_requests_per_sec()] if load.makers else []
    fastest += [load.taker_requests_per_sec()] if load.takers else []
    shortest_interval_s = 0.0 if load.aligned else 1 / max(fastest, default=1.0)
    for position, (role, number, key, secret) in enumerate(accounts):
        common = ["--url", next(spread), "--duration", repr(load.duration_s)]
        common += ["--symbols", str(load.symbols)]
        index = number % 1_000
        if role == "maker":
            rate, extra = load.maker_requests_per_sec(), ["--levels", str(MAKER_LEVELS)]
        else:
            rate, extra = load.taker_requests_per_sec(), ["--batch", str(load.batch)]
        argv = [*common, "--rate", repr(rate), "--index", str(index), *extra]
        # staggered over the shortest interval: the clients' requests interleave (e2e_clients)
        argv += ["--offset", repr(shortest_interval_s * position / len(accounts))]
        argv += ["--key", key, "--secret", secret]
        clients.append(Client(role, argv, directory / f"{role}-{index}.log"))
    index = 0
    for url, share in zip(urls, subscriber_shares(load.subscribers, len(urls)), strict=True):
        remaining = share
        while remaining > 0:
            common = ["--url", url, "--duration", repr(load.duration_s)]
            common += ["--symbols", str(load.symbols)]
            connections = min(SUBSCRIBERS_PER_PROCESS, remaining)
            argv = [*common, "--connections", str(connections), "--index", str(index)]
            clients.append(Client("subscriber", argv, directory / f"subscriber-{index}.log"))
            remaining -= connections
            index += 1
    return clients


def subscriber_shares(subscribers: int, gateways: int) -> list[int]:
    """Subscriber connections per gateway, as even as they divide: each gateway's fan-out
    costs one socket write per subscriber, so an uneven split would measure the fuller one."""
    return [subscribers // gateways + (i < subscribers % gateways) for i in range(gateways)]


def subscribers_by_url(clients: list[Client]) -> dict[str, int]:
    """How many subscriber connections each URL (a cluster's gateway) got."""
    counted: Counter[str] = Counter()
    for client in clients:
        if client.role == "subscriber":
            argv = client.argv
            url = argv[argv.index("--url") + 1]
            counted[url] += int(argv[argv.index("--connections") + 1])
    return dict(counted)


# ----------------------------------------------------------------- one step


async def measure(
    load: Load, config_path: Path, show_progress: bool, profile: bool = False, cluster: bool = False
) -> dict[str, Any]:
    """Start a server and the clients, run the timetable, and summarise what they saw.

    With `profile`, the result's "profile" is a `profiling.Profile` of the server (the
    caller writes its files and takes it out before the result is stored as JSON).
    """
    method, why = profiling.choose() if profile else ("", "")
    with tempfile.TemporaryDirectory(prefix="venue-bench-e2e-") as name:
        directory = Path(name)
        extra = listings_toml(load.symbols) + accounts_toml(bench_accounts(load), load.symbols)
        config = server_process.unlimited_config(config_path, directory, extra)
        profile_file = directory / "server.prof"
        prefix = profiling.cprofile_command(profile_file) if method == profiling.CPROFILE else None
        server: ServerProcess | ClusterServer
        if cluster:
            server = ClusterServer(config.resolve(), directory)
        else:
            server = ServerProcess(config.resolve(), directory, prefix)
        clients: list[Client] = []
        recording, found = None, None
        quiet = not show_progress
        try:
            with progress.bar(quiet, total=1, desc="server start", bar_format=STEP_FORMAT) as shown:
                url = await server.start()
                shown.update(1)
            urls = server.urls if isinstance(server, ClusterServer) else [url]
            clients = clients_for(load, urls, directory)
            with progress.bar(
                quiet, total=len(clients), desc="clients connecting", unit="client"
            ) as shown:
                await asyncio.gather(*(client.start() for client in clients))
                await asyncio.gather(*(_ready(client, shown) for client in clients))
            start_wall = time.time() + GO_DELAY_S
            for client in clients:
                client.go(start_wall)
            if method == profiling.PY_SPY and isinstance(server, ServerProcess):
                recording = profiling.PySpyRecording(server.pid, load.duration_s, directory)
            usage = await _observe(server, clients, load, start_wall, quiet, recording)
            if recording is not None:
                found = await recording.finish(usage["server_threads"])
        finally:
            await asyncio.gather(*(client.kill() for client in clients))
            died = server.exit_status() if isinstance(server, ServerProcess) else None
            clean = await server.stop()
            logged = server.last_exception()
        if method == profiling.CPROFILE and profile_file.exists():
            found = profiling.read_cprofile(profile_file, why)
    profiled = {"profile": found} if profile else {}
    shape: dict[str, Any] = {"shape": "embedded"}
    if isinstance(server, ClusterServer):
        shape = {
            "shape": "cluster: 1 core + 2 gateways, 3 NATS nodes (R=3), SQLite ledger",
            "server_cpu_percent_by_process": server.cpu_percent_by_process(),
            "subscribers_by_gateway": {
                gateway.name: subscribers_by_url(clients).get(gateway.url, 0)
                for gateway in server.cluster.gateways
            },
        }
    return (
        summarise(load, clients, usage)
        | {"server_stopped_cleanly": clean, "server_exception": logged}
        | {"server_exited_during_run": died}
        | shape
        | profiled
    )


async def _ready(client: Client, shown: "tqdm[Any]") -> None:
    await client.ready()
    shown.update(1)


async def _observe(
    server: ServerProcess | ClusterServer,
    clients: list[Client],
    load: Load,
    start_wall: float,
    quiet: bool,
    recording: profiling.PySpyRecording | None = None,
) -> dict[str, Any]:
    """Sample the server's CPU, in all and by thread, over the measured window (and profile
    it, with `recording`); show progress; await the results."""
    pid = server.pid if isinstance(server, ServerProcess) else None  # a cluster: by process

    def threads() -> list[ThreadCpu] | None:
        return server_process.read_thread_cpu(pid) if pid is not None else None

    reported: list[Client] = []
    following = asyncio.gather(*(_follow(client, reported) for client in clients))
    try:
        async with asyncio.timeout(GO_DELAY_S + load.duration_s + CLIENT_GRACE_S):
            await asyncio.sleep(max(0.0, start_wall - time.time()))
            cpu_before, threads_before = server.cpu_seconds(), threads()
            if recording is not None:
                await recording.start()
            with progress.bar(
                quiet, total=load.duration_s, desc="run", unit="s", bar_format=RUN_FORMAT
            ) as shown:
                while (elapsed := time.time() - start_wall) < load.duration_s:
                    _show_run(shown, elapsed, clients)
                    await asyncio.sleep(min(PROGRESS_INTERVAL_S, load.duration_s - elapsed))
                cpu_after, threads_after = server.cpu_seconds(), threads()
                window_s = time.time() - start_wall
                rss = server.peak_rss_mb()
                _show_run(shown, load.duration_s, clients)
            with progress.bar(
                quiet, total=len(clients), desc="client results", unit="client"
            ) as shown:
                while not following.done():
                    await asyncio.wait({following}, timeout=PROGRESS_INTERVAL_S)
                    shown.update(len(reported) - shown.n)
            await following
    except BaseException:
        following.cancel()
        # The gather ends with the CancelledError as its exception, which no one awaits now:
        # read it, or asyncio prints it with a traceback after a Ctrl-C.
        following.add_done_callback(_read_outcome)
        raise
    cpu_share = None  # CPU seconds per second of the window
    if cpu_before is not None and cpu_after is not None:
        cpu_share = (cpu_after - cpu_before) / window_s
    used = None
    if threads_before is not None and threads_after is not None:
        used = server_process.thread_cpu_used(threads_before, threads_after)
    processes = 1 if isinstance(server, ServerProcess) else len(server.pids())
    return {
        "server_cpu_share": cpu_share,
        "server_cpu_error_s": server_process.cpu_reading_error_s(processes),
        "server_threads": used,
        "window_s": window_s,
        "server_rss_mb": rss,
    }


def _read_outcome(done: "asyncio.Future[Any]") -> None:
    if not done.cancelled():
        done.exception()


async def _follow(client: Client, reported: list[Client]) -> None:
    await client.follow()
    reported.append(client)


def _show_run(shown: "tqdm[Any]", elapsed: float, clients: list[Client]) -> None:
    actions = sum(c.progress for c in clients if c.role != "subscriber")
    book = sum(c.progress for c in clients if c.role == "subscriber")
    shown.n = round(min(elapsed, shown.total or elapsed), 1)
    shown.set_postfix_str(f"answered {actions:,} actions, book messages {book:,}")


# ----------------------------------------------------------------- the summary


def _per_frame(results: list[dict[str, Any]]) -> float | None:
    """Messages per frame a role's clients read (packed frames: above 1)."""
    frames = sum(r.get("frames", 0) for r in results)
    return round(sum(r.get("messages", 0) for r in results) / frames, 2) if frames else None


def summarise(load: Load, clients: list[Client], usage: dict[str, Any]) -> dict[str, Any]:
    results = {role: [c.result for c in clients if c.role == role and c.result] for role in ROLES}
    traders = results["maker"] + results["taker"]
    total = Counter[str]()
    for result in (*traders, *results["subscriber"]):
        total.update(result["errors"])
    ack_us = [sample for r in traders for sample in r["ack_us"]]
    fill_us = [sample for r in traders for sample in r["fill_us"]]
    subscribers = results["subscriber"]
    book_messages = sum(r["book_messages"] for r in subscribers)
    sampled = sum(r["book_messages_sampled"] for r in subscribers)
    duration = load.duration_s
    acked = sum(r["acked"] for r in traders)
    # answers that came after the window (a backlog draining) stretch the time they took
    answering_s = max([duration, *(r["last_answer_s"] for r in traders)])
    buckets = math.ceil(duration / e2e_clients.BUCKET_S)
    acked_buckets = _sum_buckets(traders)
    usage = dict(usage)
    cpu_share = usage.pop("server_cpu_share", None)
    cpu_error_s = usage.pop("server_cpu_error_s", None)
    threads, window_s = usage.pop("server_threads", None), usage.pop("window_s", None)
    acked_per_sec = acked / answering_s
    cpu_error_percent = cpu_error_percent_max(cpu_share, window_s, cpu_error_s)
    return {
        "parameters": {
            "duration_s": duration,
            "rate": load.rate,
            "offered_per_sec": load.offered_per_sec(),
            "makers": load.makers,
            "takers": load.takers,
            "subscribers": load.subscribers,
            "batch": load.batch,
            "taker_share": load.taker_share,
            "aligned": load.aligned,
            "symbols": load.symbols,
            "taker_requests_per_sec": load.taker_requests_per_sec(),
            "maker_requests_per_sec": load.maker_requests_per_sec(),
            "maker_levels": MAKER_LEVELS,
        },
        "acked_per_sec": round(acked / answering_s),
        "answering_s": round(answering_s, 3),
        "ack_latency_us": stats.percentiles(ack_us),
        "service_latency_us": stats.percentiles([s for r in traders for s in r["service_us"]]),
        "server_latency_us": stats.percentiles([s for r in traders for s in r["server_us"]]),
        "fill_latency_us": stats.percentiles(fill_us),
        "book_updates_per_sec": round(book_messages / duration),
        "book_levels_per_update": round(
            sum(r["book_levels_sampled"] for r in subscribers) / sampled, 2
        )
        if sampled
        else None,
        "trade_messages_per_sec": round(sum(r["trade_messages"] for r in subscribers) / duration),
        "book_gaps": sum(r["book_gaps"] for r in subscribers),
        "book_messages_by_symbol": _book_by_symbol(subscribers),
        # socket messages the subscribers read: book and trade messages share them (packed)
        "subscriber_frames_per_sec": round(sum(r["frames"] for r in subscribers) / duration),
        "client_cpu_percent": {role: _cpu_percent(results[role]) for role in ROLES},
        "client_messages_per_frame": {role: _per_frame(results[role]) for role in ROLES},
        "client_process_cpu_percent_max": max(
            (_cpu_percent([r]) for role in ROLES for r in results[role]), default=None
        ),
        "sent": sum(r["sent"] for r in traders),
        "acked": acked,
        "rejected": sum(r["rejected"] for r in traders),
        "unanswered": sum(r["unanswered"] for r in traders),
        "requests": sum(r["requests"] for r in traders),
        "fills": sum(r["fills"] for r in traders),
        "errors": dict(total),
        "server_cpu_percent": None if cpu_share is None else round(100 * cpu_share, 1),
        "server_cpu_us_per_action": cpu_us_per_action(cpu_share, acked_per_sec),
        "server_cpu_by_thread": cpu_by_thread(threads, window_s, acked_per_sec),
        "server_cpu_error_percent_max": cpu_error_percent,
        "server_cpu_reliable": cpu_reliable(cpu_share, cpu_error_percent),
        **usage,
        "by_role": {role: _role_summary(results[role], duration) for role in ("maker", "taker")},
        "latency_curve_us": stats.curve(ack_us),
        "fill_curve_us": stats.curve(fill_us),
        "timeline": {  # the measured window only
            "bucket_s": e2e_clients.BUCKET_S,
            "acked": acked_buckets[:buckets],
            # answers that came after the window (a backlog, a stall): in `acked`, not above
            "acked_after_window": sum(acked_buckets[buckets:]),
            "book_messages": _sum_buckets(subscribers)[:buckets],
        },
    }


def _book_by_symbol(subscribers: list[dict[str, Any]]) -> dict[str, int]:
    """Book messages the subscribers read in the window, by symbol, summed."""
    counted: Counter[str] = Counter()
    for result in subscribers:
        counted.update(result.get("book_by_symbol", {}))
    return dict(sorted(counted.items()))


def _cpu_percent(results: list[dict[str, Any]]) -> float:
    """The clients' CPU over their measured window, % of one core, summed: a subscriber
    process near 100% reads as fast as it can, and the book rate is the client's limit."""
    share: float = sum(r["cpu_s"] / r["cpu_window_s"] for r in results if r.get("cpu_window_s"))
    return round(100 * share, 1)


def cpu_error_percent_max(
    cpu_share: float | None, window_s: float | None, error_s: float | None
) -> float | None:
    """How far off the server's CPU figures can be, in % of them: the clock ticks' error
    over the CPU time counted in the window. None without a reading, or with no CPU time
    counted at all (then nothing is known of it but that it was under the error)."""
    if cpu_share is None or not window_s or error_s is None:
        return None
    used_s = cpu_share * window_s
    return round(100 * error_s / used_s, 1) if used_s > 0 else None


def cpu_reliable(cpu_share: float | None, error_percent: float | None) -> bool | None:
    """Whether the CPU figures are within `server_process.CPU_ERROR_PERCENT_RELIABLE` of the
    truth; None without a reading."""
    if cpu_share is None:
        return None
    within = server_process.CPU_ERROR_PERCENT_RELIABLE
    return error_percent is not None and error_percent <= within


def cpu_us_per_action(cpu_share: float | None, acked_per_sec: float) -> float | None:
    """The server's CPU per acknowledged action, µs: its CPU seconds per second over the
    actions acknowledged per second (so a backlog drained after the window counts at the
    rate it was answered). None without a CPU reading or with nothing acknowledged."""
    if cpu_share is None or not acked_per_sec:
        return None
    return round(cpu_share * 1e6 / acked_per_sec, 1)


def cpu_by_thread(
    threads: list[ThreadCpu] | None, window_s: float | None, acked_per_sec: float
) -> dict[str, dict[str, float | None]] | None:
    """The server's CPU per acknowledged action by thread name (threads of one name summed),
    user and system, µs, busiest first, with its read and write system calls and context
    switches per acknowledged action (None where /proc gives no count), and how far the
    clock tick can put that thread's times off (`thread_cpu_error`); None without a
    reading."""
    if threads is None or not window_s:
        return None
    by_name: dict[str, list[ThreadCpu]] = {}
    for thread in threads:
        by_name.setdefault(thread.name, []).append(thread)
    cpu = {name: _cpu_of(named) for name, named in by_name.items()}
    ordered = sorted(by_name, key=lambda name: (-sum(cpu[name]), name))
    actions = acked_per_sec * window_s
    return {
        name: {
            "us_per_action": cpu_us_per_action(sum(cpu[name]) / window_s, acked_per_sec),
            "user_us_per_action": cpu_us_per_action(cpu[name][0] / window_s, acked_per_sec),
            "system_us_per_action": cpu_us_per_action(cpu[name][1] / window_s, acked_per_sec),
            "reads_per_action": _count_per_action([t.reads for t in by_name[name]], actions),
            "writes_per_action": _count_per_action([t.writes for t in by_name[name]], actions),
            "switches_per_action": _count_per_action([t.switches for t in by_name[name]], actions),
            **thread_cpu_error(sum(cpu[name]), len(by_name[name])),
        }
        for name in ordered
    }


def thread_cpu_error(counted_s: float, threads: int) -> dict[str, Any]:
    """How far off a thread's CPU figures can be, in % of them, and whether that is within
    `server_process.CPU_ERROR_PERCENT_RELIABLE`: each thread's times are whole ticks read at
    both ends of the window, two ticks a thread over its own CPU, so a quiet thread's figures
    are unreliable in a run whose total is not (the ledger store's 3 ticks in 3 s: ±67%)."""
    error = server_process.cpu_error_percent(counted_s, threads)
    reliable = error is not None and error <= server_process.CPU_ERROR_PERCENT_RELIABLE
    return {"error_percent_max": error, "reliable": reliable}


def _cpu_of(threads: list[ThreadCpu]) -> tuple[float, float]:
    """User and system seconds of threads of one name, summed."""
    return sum(t.user_s for t in threads), sum(t.system_s for t in threads)


def _count_per_action(counts: list[int | None], actions: float) -> float | None:
    """A count of threads of one name, summed, per acknowledged action (2 decimals)."""
    if not actions or any(count is None for count in counts):
        return None
    return round(sum(count for count in counts if count is not None) / actions, 2)


def _role_summary(results: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    answering_s = max([duration, *(r["last_answer_s"] for r in results)])
    return {
        "clients": len(results),
        "sent": sum(r["sent"] for r in results),
        "acked": sum(r["acked"] for r in results),
        "acked_per_sec": round(sum(r["acked"] for r in results) / answering_s),
        "ack_latency_us": stats.percentiles([s for r in results for s in r["ack_us"]]),
    }


def _sum_buckets(results: list[dict[str, Any]]) -> list[int]:
    length = max((len(r["buckets"]) for r in results), default=0)
    totals = [0] * length
    for result in results:
        for index, count in enumerate(result["buckets"]):
            totals[index] += count
    return totals


# ----------------------------------------------------------------- the sweep


def held(result: dict[str, Any], p99_bound_us: float) -> str | None:
    """Why a step broke a bound, or None if it held."""
    if result["ack_latency_us"]["p99"] > p99_bound_us:
        return f"p99 {result['ack_latency_us']['p99']:,.0f} µs > {p99_bound_us:,.0f} µs"
    if result["rejected"] or result["unanswered"]:
        return f"{result['rejected']} rejected, {result['unanswered']} unanswered"
    offered = result["parameters"]["offered_per_sec"]
    if result["acked_per_sec"] < SUSTAIN_FRACTION * offered:
        return f"acknowledged {result['acked_per_sec']:,}/s of {offered:,.0f}/s offered"
    return None


async def sweep(
    load: Load,
    config: Path,
    p99_bound_us: float,
    show_progress: bool,
    profile: bool = False,
    cluster: bool = False,
) -> dict[str, Any]:
    """Step the rate up until a bound breaks, then halve the gap between the last rate that
    held and the first that broke `SWEEP_REFINE_STEPS` times; the highest step that held is
    the result. With `profile`, every step is profiled and the chosen step's profile is kept."""
    steps: list[dict[str, Any]] = []

    async def step_at(rate: float) -> tuple[dict[str, Any], bool]:
        step = await measure(_with_rate(load, rate), config, show_progress, profile, cluster)
        broke = held(step, p99_bound_us)
        steps.append(_step_line(step, broke))
        if show_progress and progress.on_terminal():
            print(f"sweep: {_describe_step(steps[-1])}", file=sys.stderr)
        return step, broke is None

    best: dict[str, Any] | None = None
    rate = load.rate
    for _ in range(SWEEP_STEPS_MAX):
        step, holds = await step_at(rate)
        if not holds:
            break
        best = step
        if rate >= RATE_MAX:
            break  # the highest rate held: no higher to try
        rate = min(RATE_MAX, rate * SWEEP_FACTOR)
    else:
        rate = 0.0  # every step held: nothing to refine
    if best is not None and rate > best["parameters"]["rate"]:  # a break above a hold
        low, high = best["parameters"]["rate"], rate
        for _ in range(SWEEP_REFINE_STEPS):
            middle = (low + high) / 2
            found, holds = await step_at(middle)
            if holds:
                best, low = found, middle
            else:
                high = middle
    chosen = best if best is not None else step
    return chosen | {
        "mode": "max",
        "max_sustained_rate": best["parameters"]["rate"] if best else None,
        "p99_bound_us": p99_bound_us,
        "sweep": steps,
    }


def _with_rate(load: Load, rate: float) -> Load:
    return dataclasses.replace(load, rate=rate)


def _step_line(step: dict[str, Any], broke: str | None) -> dict[str, Any]:
    return {
        "rate": step["parameters"]["rate"],
        "offered_per_sec": step["parameters"]["offered_per_sec"],
        "acked_per_sec": step["acked_per_sec"],
        "ack_latency_us": step["ack_latency_us"],
        "rejected": step["rejected"],
        "unanswered": step["unanswered"],
        "server_cpu_percent": step["server_cpu_percent"],
        "server_cpu_us_per_action": step["server_cpu_us_per_action"],
        "server_cpu_reliable": step["server_cpu_reliable"],
        "broke": broke,
    }


def _describe_step(line: dict[str, Any]) -> str:
    verdict = f"broke: {line['broke']}" if line["broke"] else "held"
    return (
        f"rate {line['rate']:,.0f}/s → {line['acked_per_sec']:,}/s acked, "
        f"p99 {line['ack_latency_us']['p99']:,.0f} µs, "
        f"server CPU {line['server_cpu_us_per_action']} µs/action"
        f"{'' if line['server_cpu_reliable'] is not False else ' (unreliable)'} — {verdict}"
    )


# ----------------------------------------------------------------- the command


def check_arguments(args: argparse.Namespace) -> Load:
    def bounded(name: str, value: float, low: float, high: float) -> None:
        if not low <= value <= high:
            raise CommandFailed(f"--{name} must be in [{low:g}, {high:g}], not {value:g}")

    sweep_only = {"start_rate": DEFAULT_RATE, "p99_bound_ms": DEFAULT_P99_BOUND_MS}
    given = [name for name in sweep_only if getattr(args, name) is not None]
    if given and not args.max:  # not silently ignored: a run at the default rate instead
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise CommandFailed(f"{options}: only with --max (they shape its sweep)")
    for name, default in sweep_only.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    rate = args.start_rate if args.max else (args.rate if args.rate is not None else DEFAULT_RATE)
    if not 0 < args.duration <= DURATION_S_MAX:
        raise CommandFailed(f"--duration must be in (0, {DURATION_S_MAX:g}] seconds")
    bounded("start-rate" if args.max else "rate", rate, 1, RATE_MAX)
    bounded("batch", args.batch, 1, BATCH_MAX)
    bounded("makers", args.makers, 1, MAKERS_MAX)
    bounded("takers", args.takers, 1, TAKERS_MAX)
    bounded("subscribers", args.subscribers, 0, SUBSCRIBERS_MAX)
    bounded("symbols", args.symbols, 1, SYMBOLS_MAX)
    if not 0 < args.taker_share <= 1:
        raise CommandFailed(f"--taker-share must be in (0, 1], not {args.taker_share:g}")
    if not 0 < args.p99_bound_ms < math.inf:  # nan fails this too
        raise CommandFailed(f"--p99-bound-ms must be a positive number, not {args.p99_bound_ms}")
    server_process.check_config(args.config)
    return Load(
        args.duration,
        rate,
        args.makers,
        args.takers,
        args.subscribers,
        args.batch,
        args.taker_share,
        args.aligned,
        args.symbols,
    )


def run(args: argparse.Namespace) -> int:
    load = check_arguments(args)
    # Progress (server start, clients connecting, the run, results, report) is drawn on
    # stderr, and only when it is a terminal: cli.progress.
    if args.cluster and args.profile:
        raise CommandFailed("--profile records one server process: not with --cluster")
    e2e_report.check_out(args.out)
    if args.max:
        bound_us = args.p99_bound_ms * 1_000
        work = sweep(load, args.config, bound_us, True, args.profile, args.cluster)
    else:
        work = measure(load, args.config, True, args.profile, args.cluster)
    try:
        result = {"mode": "rate"} | server_process.run_async(work)
    except ClientFailed as failed:
        raise SystemExit(f"venue bench e2e: {failed}") from None
    found = result.pop("profile", None)
    if found is not None:
        result["profile"] = found.summary()
    report = environment.describe("e2e") | {"result": result}
    with progress.bar(total=1, desc="report", bar_format=STEP_FORMAT) as shown:
        written = e2e_report.write(report, args.out, found)
        shown.update(1)
    people = sys.stderr if args.json else sys.stdout  # --json: stdout is the one JSON line
    print(e2e_report.summary(result), file=people)
    for path in written:
        print(f"wrote {path}", file=people)
    if args.json:
        print(json.dumps(headline(result)))
    return 0 if result["acked"] and result["server_stopped_cleanly"] else 1


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON line: everything but the long curves and timelines (they are in the file)."""
    skip = {"latency_curve_us", "fill_curve_us", "timeline"}
    return {key: value for key, value in result.items() if key not in skip}
