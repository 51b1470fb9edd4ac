"""The `venue` command line: one entry point for running, demonstrating and measuring the venue.

Subcommands are thin: each parses its flags and calls the module that owns the work. A
command that cannot do its work fails in one line on stderr, `venue: <what and why>`, exit
status 2 (`cli.failures`); bad flags likewise, in argparse's words. Ctrl-C exits 130; SIGTERM
does what Ctrl-C does and exits 143 (`serve`, `cluster`, `demo` and the bots stop
cleanly on either).
"""

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cli import hangup  # the stop signals' note, before any heavy import: `main`

if TYPE_CHECKING:
    import argparse

Run = Callable[["argparse.Namespace"], int]
SERVE_DESCRIPTION = (
    "Run the venue: recover its data directory (snapshot and journal) or build it from the"
    " config, print where to connect, and serve until Ctrl-C (SIGINT), SIGTERM or SIGHUP (a"
    " closed terminal), each a clean stop: answers owed sent, clients told, the journal and a"
    " last snapshot written. Logs go to stderr. Exit status: 0 a clean stop; 2 it could not"
    " start (one line says why; the data directory left as found, but for the"
    " ledger.sqlite-wal and -shm, SQLite's own, that a full disk's refusal may leave and the"
    " next start reuses, and a start failed at its listen, the port taken since its check,"
    " which is stopped as a clean stop: its snapshot and clean-stop mark stay, and its"
    " epochs.json entry if it journaled commands); 70 it stopped itself on a failure while"
    " serving or stopping (the journal's or"
    " the ledger store's, a write of the stop's, or a broken invariant: its log's `fatal` line"
    " says which, with its traceback for a stop's failure that is no disk's or service's; a"
    " restart recovers what was acknowledged). A stop signal during the start (its imports,"
    " from the first line of the venue's that runs: only the interpreter's own start-up, a few"
    " tens of milliseconds, takes the signal's default action; a long replay, the wait for"
    " PostgreSQL or NATS, a core's takeover)"
    " ends the start at its next safe point, the data"
    " directory given back"
    " as a refused start leaves it (but for an existing ledger store, which may be left partly"
    " caught up from the journal: the next start finishes it), and exits 0 (`tokenvenue"
    " stopped before it started`). Operating it:"
    " README.md,"
    " docs/gateway.md (Operating), docs/cluster.md for --role and --nats."
)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["serve"]:  # its stop signals noted before its modules load (~0.7 s):
        with hangup.noting_stops():  # a stop asked then is a clean stop (`serve.run`)
            return _main(arguments)
    with hangup.terminating_as_interrupt():  # SIGTERM, SIGHUP clean up as Ctrl-C does
        try:
            return _main(arguments)
        except KeyboardInterrupt:  # a SIGTERM between the flags' parse and the work
            return hangup.interrupt_status()


def _main(argv: list[str]) -> int:
    try:  # Ctrl-C while the modules load (a third of a second): no traceback, as after
        from cli.failures import run_main

        parser = _parser()
    except KeyboardInterrupt:
        return hangup.interrupt_status()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser: its --help lists its flags
        _command_parser(parser, argv).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    status: int = run_main(parser.prog, lambda: args.run(args))
    return status


def _command_parser(
    parser: "argparse.ArgumentParser", argv: list[str]
) -> "argparse.ArgumentParser":
    """The parser of the (sub)command `argv` names (`venue ledger balances`'s), found by its
    words in turn; `parser` itself when it names none."""
    import argparse

    for word in argv:
        commands = [
            action.choices
            for action in parser._actions  # (argparse keeps its subparsers there alone)
            if isinstance(action, argparse._SubParsersAction)
        ]
        if not commands:
            break
        if word in commands[0]:
            parser = commands[0][word]
    return parser


def _parser() -> "argparse.ArgumentParser":
    from pathlib import Path

    from cli import logs
    from cli.arguments import directory, dsn
    from cli.failures import OneLineParser

    parser = OneLineParser(prog="venue", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser(
        "serve", help="run the venue's websocket server", description=SERVE_DESCRIPTION
    )
    serve.add_argument(
        "--config",
        type=Path,
        default=Path("venue.toml"),
        help="default: venue.toml (its keys: docs/configuration.md)",
    )
    serve.add_argument("--host", default=None, help="default: the config's (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="default: the config's (8765)")
    serve.add_argument(
        "--data-dir", type=directory, default=None, help="default: the config's (data)"
    )
    serve.add_argument(
        "--postgres",
        metavar="DSN",
        type=dsn,
        default=None,
        help="book the ledger into this PostgreSQL database (default: the config's, else SQLite)",
    )
    serve.add_argument(
        "--role",
        choices=("all", "core", "gateway"),
        default="all",
        help="all: the one-process venue (default); core or gateway: a cluster's role",
    )
    serve.add_argument(
        "--nats",
        default=None,
        metavar="URL",
        help="NATS URLs (comma-separated): the journal is a JetStream stream there, not the"
        " file; with --role core or gateway, the cluster's servers",
    )
    serve.add_argument(
        "--name", default=None, help="this core's or gateway's name, for logs (default: core, gw)"
    )
    serve.add_argument(
        "--log-level", choices=logs.LEVELS, default="info", help="default: info (on stderr)"
    )
    serve.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="text",
        help="default: text; json: one object per line",
    )
    serve.set_defaults(run=_run_serve)

    from cli import cluster as local_cluster

    cluster = commands.add_parser(
        "cluster", help="a whole cluster on loopback: NATS x3, PostgreSQL, cores, gateways"
    )
    local_cluster.add_arguments(cluster)
    cluster.set_defaults(run=local_cluster.run)

    from client import bots, live_demo

    demo = commands.add_parser("demo", help="the venue live: a server, two makers and a taker")
    live_demo.add_arguments(demo)
    demo.set_defaults(run=live_demo.run)

    engine_demo = commands.add_parser("demo-engine", help="a seeded session on the engine alone")
    engine_demo.add_argument(
        "--seed", type=int, default=7, help="of the session's orders (default 7)"
    )
    engine_demo.add_argument(
        "--orders", type=_positive_int, default=2_000, help="rounds of orders (default 2,000)"
    )
    engine_demo.add_argument(
        "--data-dir",
        type=directory,
        default=Path("data-demo"),
        help="its journal and ledger store, started afresh (default: data-demo)",
    )
    engine_demo.add_argument(
        "--config",
        type=Path,
        default=Path("venue.toml"),
        help="its instruments (default: venue.toml); it trades as accounts 1, 2 and 3",
    )
    engine_demo.set_defaults(run=_run_demo)

    bot = commands.add_parser("bot", help="run a trading bot against a running venue")
    bot_commands = bot.add_subparsers(title="bots", required=True)
    maker = bot_commands.add_parser("market-maker", help="quote a ladder with quote.mass")
    bots.add_market_maker_arguments(maker)
    maker.set_defaults(run=_with_trade_url(bots.run_market_maker))
    taker = bot_commands.add_parser("taker", help="send random marketable orders")
    bots.add_taker_arguments(taker)
    taker.set_defaults(run=_with_trade_url(bots.run_taker))

    from core import ledger_cli, verify

    check = commands.add_parser("verify", help="replay the journal, check snapshot and store")
    verify.add_arguments(check)
    check.set_defaults(run=verify.run)

    ledger = commands.add_parser("ledger", help="inspect and verify the ledger store")
    ledger_cli.add_arguments(ledger)

    from core import journal_archive

    journal_files = commands.add_parser("journal", help="the command journal's files")
    journal_archive.add_arguments(journal_files)

    from client import admin_cli

    admin = commands.add_parser(
        "admin",
        help="operator commands against a running venue",
        description="Operator commands against a running venue, one per connection. Exit"
        " status: 0 done, 1 refused by the venue or not sent (nothing changed), 2 no answer. Each"
        " command"
        " goes with a client operation id (--cl-op-id, else a new one), under"
        " which the venue does it at most once: one that got no answer once sent is sent"
        " again with the same id a few times; if still no answer, the line gives the id, to"
        " send the command again with --cl-op-id as safely.",
    )
    admin_cli.add_arguments(admin)
    admin.set_defaults(run=admin_cli.run)

    from replay import lobster

    replay = commands.add_parser("replay", help="replay historical order flow through the engine")
    replay_commands = replay.add_subparsers(title="formats", required=True)
    lobster_replay = replay_commands.add_parser("lobster", help="LOBSTER message + orderbook")
    lobster.add_arguments(lobster_replay)
    lobster_replay.set_defaults(run=lobster.run)

    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(title="benchmarks", required=True)
    from bench import compare, engine_bench

    engine = bench_commands.add_parser("engine", help="the matching engine on seeded workloads")
    engine_bench.add_arguments(engine)
    compare.add_arguments(engine)  # --compare: the same workload through other engines too
    engine.set_defaults(run=compare.run)
    from bench import journal_bench, recovery_bench, store_bench

    recovery = bench_commands.add_parser("recovery", help="replay speed; snapshot size, time")
    recovery_bench.add_arguments(recovery)
    recovery.set_defaults(run=recovery_bench.run)

    journal = bench_commands.add_parser("journal", help="durable commands per second")
    journal_bench.add_arguments(journal)
    journal.set_defaults(run=journal_bench.run)

    store = bench_commands.add_parser("store", help="DvP settlements committed per second")
    store_bench.add_arguments(store)
    store.set_defaults(run=store_bench.run)
    from bench import gateway_bench

    gateway = bench_commands.add_parser("gateway", help="order round trips over a websocket")
    gateway_bench.add_arguments(gateway)
    gateway.set_defaults(run=gateway_bench.run)
    from bench import ws_layer_bench

    ws_layer = bench_commands.add_parser("ws-layer", help="server CPU per frame: websocket layers")
    ws_layer_bench.add_arguments(ws_layer)
    ws_layer.set_defaults(run=ws_layer_bench.run)
    from bench import syscall_floor

    floor = bench_commands.add_parser("floor", help="the kernel's CPU per send and journal write")
    syscall_floor.add_arguments(floor)
    floor.set_defaults(run=syscall_floor.run)
    from bench import e2e_bench

    e2e = bench_commands.add_parser("e2e", help="the whole venue: makers, takers, subscribers")
    e2e_bench.add_arguments(e2e)
    e2e.set_defaults(run=e2e_bench.run)
    from bench import suite

    every = bench_commands.add_parser("all", help="a short run of every benchmark")
    suite.add_arguments(every)
    every.set_defaults(run=suite.run)
    return parser


def _positive_int(text: str) -> int:
    """An argparse type: a whole number above zero."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not above zero")
    return value


def _with_trade_url(run: Run) -> Run:
    """A bot's run, after its `--url` is checked to name the trade endpoint."""

    def checked(args: "argparse.Namespace") -> int:
        from cli.failures import check_trade_url

        check_trade_url(args.url)
        return run(args)

    return checked


def _run_serve(args: "argparse.Namespace") -> int:
    from cli import serve

    return serve.run(
        args.config,
        args.host,
        args.port,
        args.data_dir,
        args.log_level,
        args.log_format,
        postgres=args.postgres,
        role=args.role,
        nats=args.nats,
        name=args.name,
    )


def _run_demo(args: "argparse.Namespace") -> int:
    from client import demo

    return demo.run(
        seed=args.seed, orders=args.orders, data_dir=args.data_dir, config_path=args.config
    )


if __name__ == "__main__":
    sys.exit(main())
