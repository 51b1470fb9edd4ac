"""`venue cluster`: a whole cluster on loopback until Ctrl-C (cluster/local.py does the work).

Brings up 3 NATS nodes, PostgreSQL, an active and a standby core and two gateways as
processes, on any free ports or on the consecutive ports from `--ports FIRST`, says each step
of the start and then where to connect, and stops everything on SIGINT, SIGTERM or SIGHUP; a config
every core would refuse, a port taken, or a cluster that cannot start fails in one line
(`cli.failures.CommandFailed`), the first two before anything starts.
"""

import argparse
import contextlib
import errno
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from cli.arguments import int_within
from cli.failures import CommandFailed
from cli.hangup import detach_hung_up_terminal, how_to_stop, say_after_stop, stop_signals
from cluster.local import ClusterError, LocalCluster, ephemeral_overlap, how_it_ended
from cluster.nats import NatsError
from cluster.postgres import PostgresError
from core import archive_runs
from core import config as venue_config
from core.venue_core import now_us

# A loopback cluster shares one machine: a few of each show failover and spreading the
# sessions; more only compete for its cores. At least one of each, or no cluster serves.
CORES_MAX = 4
GATEWAYS_MAX = 8
WATCH_INTERVAL_S = 0.5  # how soon a process's exit is reported: well within a takeover's ~10 s
ALREADY_STOPPING = (
    "already stopping the cluster, in order (gateways, cores, then PostgreSQL and NATS):"
    " wait (a role that ignores SIGTERM is killed after 20 s); kill -9 ends this process at"
    " once, and the kernel then sends its roles SIGTERM (one that ignores it stays)\n"
)
# A gateway that stopped on its own (killed, crashed) stopped the cluster: a failure, which a
# supervisor restarts on; exit 0 (until session 28) read as the operator's own stop.
EXIT_GATEWAY_STOPPED = 1
DESCRIPTION = (
    "Run a whole venue cluster on this machine: NATS nodes, PostgreSQL (unless --sqlite),"
    " cores (the first active, the rest standby) and gateways, each a process, each with its"
    " log in --dir; until Ctrl-C (SIGINT), SIGTERM or SIGHUP, which stop them in order. Exit"
    " status: 0 stopped so; 1 a gateway stopped on its own (named, with its log), which stops"
    " the cluster; 2 it could not start (one line: a bad config, a taken port, a busy --dir)."
    " docs/cluster.md."
)
# What `venue cluster` knows once its own cores have stopped: not whether any other core runs
# (until session 38 it said "no core is left running" while a core the operator had started
# by hand on the same NATS took over and served)
OWN_CORES_STOPPED = (
    "the cores this cluster started have all stopped: unless another core runs (one started"
    " by hand, `venue serve --role core` on the NATS and ledger store above), requests are"
    " answered 504 OUTCOME_UNKNOWN after [venue] outcome_wait_ms until one does"
    " (docs/cluster.md)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("venue.toml"),
        help="default: venue.toml (its keys: docs/configuration.md)",
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="where logs and data go (default: a new /tmp dir)"
    )
    parser.add_argument(
        "--nats-nodes",
        type=int,
        choices=(1, 3),
        default=3,
        help="NATS servers: 3 (default) replicate the stream; 1 is the smallest shape",
    )
    parser.add_argument(
        "--gateways",
        type=int_within(1, GATEWAYS_MAX),
        default=2,
        help=f"1..{GATEWAYS_MAX} (default 2)",
    )
    parser.add_argument(
        "--cores",
        type=int_within(1, CORES_MAX),
        default=2,
        help=f"1..{CORES_MAX} (default 2): the first active, the rest standby",
    )
    parser.add_argument(
        "--sqlite", action="store_true", help="each core books into SQLite, not PostgreSQL"
    )
    parser.add_argument(
        "--ports",
        type=int_within(1, 65_535),
        default=None,
        metavar="FIRST",
        help="listen on the consecutive ports from FIRST (NATS, PostgreSQL, then the gateways;"
        " 3 x 3 + 1 + 2 = 12 by default), each checked free first; default: any free ports",
    )


def run(args: argparse.Namespace) -> int:
    """Bring the cluster up, say where to connect, and stop it all on Ctrl-C, SIGTERM or SIGHUP
    (exit 0), or once a gateway stops on its own (exit 1)."""
    _check_config(args.config)  # before a directory is made or a process started
    if args.dir is not None and args.dir.exists() and not args.dir.is_dir():
        # mkdir's own word, "File exists", read as if the directory were the problem
        raise CommandFailed(f"{args.dir}: not a directory (give a directory for --dir)")
    # absolute: each role runs in the source tree, where a relative --dir would put its data
    directory = (args.dir or Path(tempfile.mkdtemp(prefix="venue-cluster-"))).resolve()
    try:  # the ports are checked here, before anything starts
        cluster = LocalCluster(
            directory,
            args.config.resolve(),
            nats_nodes=args.nats_nodes,
            postgres=not args.sqlite,
            cores=args.cores,
            gateways=args.gateways,
            first_port=args.ports,
            say=_say,
        )
    except ClusterError as refused:
        raise CommandFailed(f"the cluster did not start: {refused}") from None
    signals = stop_signals()  # a SIGHUP ignored (nohup) stays so; a SIGINT ignored does not
    for stop_signal in signals:
        signal.signal(stop_signal, _interrupt)
    status = 0  # the operator's stop
    print(f"starting a local cluster in {directory} ...", flush=True)
    _note_outgoing_range(cluster.fixed_ports)
    try:
        cluster.start()
        # A terminal closed while the banner is written fails its writes (EIO) a moment before
        # its SIGHUP is taken: raised, that OSError went past the ordered stop, into which the
        # SIGHUP's KeyboardInterrupt then fell, exit 130 (seen once, session 35's last run)
        try:
            _banner(cluster, signals, args.config)
        except OSError as failed:  # (a reader gone, EPIPE, still stops the cluster)
            if failed.errno != errno.EIO:
                raise
        _watch(cluster)
        for gateway in cluster.gateways:  # which one, how, and where to read why
            if not gateway.running() and gateway.process is not None:
                how = how_it_ended(gateway.process.returncode)
                print(f"gateway {gateway.name} stopped ({how}): see {gateway.log_path}")
        print("a gateway stopped: stopping the cluster", flush=True)
        status = EXIT_GATEWAY_STOPPED
    except KeyboardInterrupt:
        print("stopping the cluster ...", flush=True)
    except (ClusterError, NatsError, PostgresError) as failed:
        raise CommandFailed(f"the cluster did not start: {failed}") from None
    except psycopg.Error as failed:  # making the ledger's database: the server refused it
        said = " ".join(str(failed).split())  # the driver's lines (detail, hint) on one
        raise CommandFailed(f"the cluster did not start: PostgreSQL: {said}") from None
    finally:
        _no_more_interrupts()  # a start that failed stops too
        cluster.stop()
    say_after_stop("tokenvenue cluster stopped")
    return status


def _banner(cluster: LocalCluster, signals: tuple[signal.Signals, ...], config: Path) -> None:
    """Where to connect, how to stop, and an example of each client command."""
    print("tokenvenue cluster up:")
    for line in cluster.describe():
        print(f"  {line}")
    print(f"{connect_advice(len(cluster.gateways))}; {how_to_stop(signals)}")
    print(f"  e.g. venue bot taker --url {cluster.gateways[0].url}")
    print(f"  operator commands: {_admin_example(cluster.gateways[0].url, config)}")
    sys.stdout.flush()


def _note_outgoing_range(ports: list[int]) -> None:
    """A line when the chosen ports reach into the kernel's range for outgoing connections,
    where a failed bind is no mistake of the operator's and another range avoids it."""
    overlap = ephemeral_overlap(ports)
    if overlap is not None:
        print(
            f"  note: ports {ports[0]}-{ports[-1]} lie in this machine's range for outgoing"
            f" connections ({overlap[0]}-{overlap[1]}): one may hold a port when its server"
            f" binds it (`Address already in use`); a range below {overlap[0]} avoids that",
            flush=True,
        )


def _watch(cluster: LocalCluster) -> None:
    """Until a gateway stops: a line for each other process that exits (a core, a NATS node,
    PostgreSQL), and, after a core's, for the core that takes over, or that the cores it
    started have all stopped (`OWN_CORES_STOPPED`: one started by hand is not watched):
    without them a failover was seen by the clients alone, never by the operator."""
    told: set[str] = set()
    awaiting_active = False  # a core exited: say which one is active once one is
    while all(role.running() for role in cluster.gateways):
        for name, how, log in cluster.exited():
            if name not in told:
                told.add(name)
                print(f"{name} stopped ({how}): see {log}", flush=True)
                awaiting_active = awaiting_active or name.startswith("core ")
        if awaiting_active:
            active = cluster.active_core()
            if active is not None:
                print(f"core {active.name} active", flush=True)
                awaiting_active = False
            elif not any(core.running() for core in cluster.cores):
                print(OWN_CORES_STOPPED, flush=True)
                awaiting_active = False
        time.sleep(WATCH_INTERVAL_S)


def connect_advice(gateways: int) -> str:
    """Where the banner sends clients: "either" only when there are two gateways to choose
    from (`--gateways` is 1 to 8)."""
    if gateways == 1:
        return "connect a client to the gateway"
    which = "either" if gateways == 2 else "any"
    return f"connect a client to {which} gateway"


def _admin_example(url: str, config: Path) -> str:
    """`venue admin` as it reaches this cluster: through a gateway's URL, which the config's
    `[venue] port` (its default without `--url`) is not, and with the config's admin key."""
    flags = "" if config == Path("venue.toml") else f" --config {config}"
    return f"venue admin COMMAND ... --url {url}{flags}"


def _check_config(path: Path) -> None:
    """Refuse, in one line, a config every core would refuse (missing, not TOML, a wrong key
    or amount), before NATS and PostgreSQL start for nothing; as `venue serve` checks it."""
    config = venue_config.load(path)
    if not path.resolve().is_file():  # each role reads it again, in a process of its own
        raise CommandFailed(
            f"{path}: a pipe, not a file: the cluster's roles each read the config in a process"
            " of their own; give a file (owner-only, as it holds the keys' secrets)"
        )
    try:
        venue_config.setup_commands(config, now_us=now_us(), building=False)
    except venue_config.ConfigError as invalid:
        raise CommandFailed(f"{path}: {invalid}") from None
    found = archive_runs.configured_problem(config.venue, Path(config.venue.data_dir), "nats")
    if found is not None:  # (the file journal's keys: every role would refuse them over NATS)
        raise CommandFailed(f"{path}: {found}")


def _say(step: str) -> None:
    """One line per step of the start, which takes tens of seconds: a sign of life."""
    print(f"  {step}", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    """The first Ctrl-C, SIGTERM or SIGHUP (its terminal closed: the roles, each in a session
    of its own, get no SIGHUP, and the kernel's SIGTERM to each at this process's death
    replaced the ordered stop): stop. The next are only said (`_already_stopping`), from
    this moment on, so that none lands between this one and the stop."""
    _no_more_interrupts()
    if signum == signal.SIGHUP:
        detach_hung_up_terminal()  # the stop's lines must not fail on a closed terminal
    raise KeyboardInterrupt


def _no_more_interrupts() -> None:
    for stop_signal in stop_signals():  # an ignored SIGHUP (nohup) left ignored
        signal.signal(stop_signal, _already_stopping)


def _already_stopping(signum: int, frame: object) -> None:
    """A Ctrl-C, SIGTERM or SIGHUP while the cluster stops: said, not obeyed. Obeyed, it cut the
    stop short (exit 130), and the kernel's SIGTERM to every process at once replaced the
    order (gateways, cores, then the services under them). Written with `os.write`: a
    handler's print could land inside the main thread's own. A SIGHUP (Ctrl-C, then the
    window closed) detaches the terminal first, and a write that fails anyway is let go:
    before, its EIO was raised inside `cluster.stop()`, which then killed the roles out of
    order and exited 1."""
    if signum == signal.SIGHUP:
        detach_hung_up_terminal()
    with contextlib.suppress(OSError):  # nowhere left to say it: the stop matters, not this
        os.write(sys.stdout.fileno(), ALREADY_STOPPING.encode())
