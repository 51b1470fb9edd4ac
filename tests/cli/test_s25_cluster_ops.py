"""`venue cluster` as an operator runs it (cli/cluster.py, cluster/local.py): on ports of the
operator's choosing, saying each step of its start, refusing a bad config or a taken port
before anything starts, and leaving no process behind when it is killed."""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cluster import local
from tests.cli.test_cluster import _wait_for
from tests.conftest import ROOT
from tests.sample_config import SAMPLE_CONFIG

STOP_TIMEOUT_S = 60
REFUSAL_TIMEOUT_S = 30  # a refusal before anything starts: the interpreter's start, no more
# Where the search for a block of free ports runs: the 10,000 ports just below the kernel's
# range for outgoing connections (32768-60999 by default), where no connection is given a
# local port that a cluster's server then fails to bind (`Address already in use`: the
# cluster takes --ports as given, no retry) (review of session 25: 47240 was inside it).
SEARCH_TO_PORT = (local.ephemeral_range() or (32_768, 60_999))[0] - 1
SEARCH_FROM_PORT = max(1_024, SEARCH_TO_PORT - 10_000)
# Each pytest-xdist worker searches its own slice of that range: two workers probing the same
# first free block at once would both start clusters on it (without `--dist loadfile` this
# module's tests run in several workers at a time).
WORKER_SLICE_PORTS = 1_000
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
_WORKER_INDEX = int(_WORKER) if _WORKER.isdigit() else 0
_SEARCHED_PORTS = SEARCH_TO_PORT - SEARCH_FROM_PORT
WORKER_FIRST_PORT = SEARCH_FROM_PORT + _WORKER_INDEX * WORKER_SLICE_PORTS % _SEARCHED_PORTS
SMALLEST_SHAPE = ["--nats-nodes", "1", "--sqlite", "--cores", "1", "--gateways", "1"]
SMALLEST_PORTS = 3  # one NATS node's client and monitoring ports, one gateway's


def free_block(count: int) -> int:
    """The first port of `count` consecutive ports free on 127.0.0.1 now."""
    for first in range(WORKER_FIRST_PORT, SEARCH_TO_PORT - count):
        if all(_free(port) for port in range(first, first + count)):
            return first
    searched = f"{WORKER_FIRST_PORT}-{SEARCH_TO_PORT}"
    raise AssertionError(f"no {count} free consecutive ports in {searched}")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cluster(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[bytes], Path]:
    output_path = tmp_path / "out.txt"
    command = [sys.executable, "-m", "cli.main", "cluster", "--dir", str(tmp_path / "cluster")]
    command += [*flags]
    with output_path.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT)
    return process, output_path


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_cluster_listens_on_the_ports_from_first_and_says_each_step(tmp_path: Path) -> None:
    first = free_block(SMALLEST_PORTS)
    config = ["--config", str(SAMPLE_CONFIG)]
    process, output_path = _cluster(tmp_path, *config, *SMALLEST_SHAPE, "--ports", str(first))
    try:
        text = _wait_for(output_path, "stop with Ctrl-C", process)
    finally:
        _stop(process)
    assert f"NATS up (1 nodes): nats://127.0.0.1:{first}" in text
    assert "core core-a active" in text
    assert f"gateway gw-a up: ws://127.0.0.1:{first + 2}/ws/trade" in text
    # how an operator's command reaches it (session 30; before, only a bot's example was
    # given, and `venue admin` with no --url went to the config's port, where no gateway is)
    admin_line = f"venue admin COMMAND ... --url ws://127.0.0.1:{first + 2}/ws/trade"
    assert f"operator commands: {admin_line} --config {SAMPLE_CONFIG}" in text
    from cluster.local import ephemeral_overlap

    if ephemeral_overlap(list(range(first, first + SMALLEST_PORTS))) is not None:
        assert f"note: ports {first}-{first + 2} lie in this machine's range" in text
    # the steps come before the summary: a sign of life while the start takes seconds
    assert text.index("core core-a active") < text.index("tokenvenue cluster up")
    assert process.returncode == 0


def test_a_taken_port_of_the_range_is_refused_before_anything_starts(tmp_path: Path) -> None:
    first = free_block(SMALLEST_PORTS)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past a TIME_WAIT
        holder.bind(("127.0.0.1", first + 1))
        holder.listen()
        config = ["--config", str(SAMPLE_CONFIG)]
        process, output_path = _cluster(tmp_path, *config, *SMALLEST_SHAPE, "--ports", str(first))
        assert process.wait(REFUSAL_TIMEOUT_S) == 2
    text = output_path.read_text()
    assert text.strip().startswith(
        f"venue: the cluster did not start: port {first + 1} of {first}-{first + 2} is taken"
        " (Address already in use): give another first port, or free that one"
    ), text
    assert len(text.strip().splitlines()) == 1, text
    assert not (tmp_path / "cluster" / "nats").exists(), "NATS started for nothing"


def test_a_range_past_the_last_port_is_refused_naming_it(tmp_path: Path) -> None:
    config = ["--config", str(SAMPLE_CONFIG)]
    process, output_path = _cluster(tmp_path, *config, *SMALLEST_SHAPE, "--ports", "65534")
    assert process.wait(REFUSAL_TIMEOUT_S) == 2
    assert "ports 65534-65536 are not within 1..65535" in output_path.read_text()


def test_a_config_the_cores_would_refuse_is_refused_before_nats_starts(tmp_path: Path) -> None:
    """The finding: a missing or mistyped config started NATS (and PostgreSQL), then failed
    on the first core's log; now it is refused like `venue serve` refuses it."""
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[venue]\nport = "8765"\n')
    for config, why in (
        (tmp_path / "missing.toml", "missing.toml: No such file or directory"),
        (wrong, "wrong.toml: Expected `int`, got `str` - at `$.venue.port`"),
    ):
        process, output_path = _cluster(tmp_path, "--config", str(config), *SMALLEST_SHAPE)
        assert process.wait(REFUSAL_TIMEOUT_S) == 2
        text = output_path.read_text()
        assert why in text and len(text.strip().splitlines()) == 1, text
        assert not (tmp_path / "cluster").exists(), "a start refused made its directory"


def test_the_help_counts_the_ports_of_the_default_shape() -> None:
    """`--ports`'s help says how many the default shape takes: 3 NATS nodes x 3, PostgreSQL,
    two gateways; keep it true."""
    from cluster.local import LocalCluster

    help_text = subprocess.run(
        [sys.executable, "-m", "cli.main", "cluster", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    match = re.search(r"= (\d+) by\s+default", help_text)
    assert match is not None, help_text
    assert int(match.group(1)) == LocalCluster.ports_needed(3, True, 2)


def test_the_help_says_what_it_runs_its_exit_statuses_and_every_flags_meaning() -> None:
    """The finding (session 28): `venue cluster --help` had no description, and `--config`
    and `--nats-nodes` no help, where `venue serve --help` says all of it."""
    from cli.main import _parser

    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    cluster = commands.choices["cluster"]
    assert cluster.description is not None
    assert "Exit status: 0" in cluster.description
    assert "1 a gateway stopped on its own" in cluster.description
    unexplained = [a.dest for a in cluster._actions if not a.help]
    assert unexplained == [], unexplained


def _children(pid: int) -> list[int]:
    """The processes `pid` started (Linux: its main thread's children)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its new parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_killed_cluster_leaves_no_core_or_gateway_behind(tmp_path: Path) -> None:
    """The finding: after kill -9 of `venue cluster`, NATS and PostgreSQL went with it but
    its cores and gateways ran on, orphaned, the gateways holding their ports and every role
    waiting for NATS forever."""
    first = free_block(SMALLEST_PORTS)
    config = ["--config", str(SAMPLE_CONFIG)]
    process, output_path = _cluster(tmp_path, *config, *SMALLEST_SHAPE, "--ports", str(first))
    try:
        _wait_for(output_path, "stop with Ctrl-C", process)
        started = _children(process.pid)
        assert len(started) == 3, started  # a NATS node, the core, the gateway
        process.kill()
        process.wait(STOP_TIMEOUT_S)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while not all(_gone(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in started if not _gone(pid)]
    finally:
        _stop(process)
    for pid in left:  # what the finding left, so that a failure leaves nothing either
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"left running: {left}"
    assert _free(first + 2), "the gateway's port is still held"


def _named(pids: list[int], name: str) -> int:
    """The one of `pids` whose command line has `--name name`."""
    for pid in pids:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"--name" in arguments and arguments[arguments.index(b"--name") + 1] == name.encode():
            return pid
    raise AssertionError(f"no process named {name} among {pids}")


def test_a_core_killed_is_reported_and_so_is_the_core_that_takes_over(tmp_path: Path) -> None:
    """The finding: a core killed under `venue cluster` went unsaid (only a gateway's exit
    was watched): the standby took over, or none was left, and the operator never knew."""
    first = free_block(SMALLEST_PORTS)
    shape = ["--nats-nodes", "1", "--sqlite", "--cores", "2", "--gateways", "1"]
    config = ["--config", str(SAMPLE_CONFIG)]
    process, output_path = _cluster(tmp_path, *config, *shape, "--ports", str(first))
    try:
        _wait_for(output_path, "stop with Ctrl-C", process)
        os.kill(_named(_children(process.pid), "core-a"), signal.SIGKILL)
        _wait_for(output_path, "core core-a stopped (killed by SIGKILL): see", process)
        text = _wait_for(output_path, "core core-b active\n", process)
        assert text.count("core core-b active") == 1, text  # the step line was "... standby"
        os.kill(_named(_children(process.pid), "core-b"), signal.SIGKILL)
        _wait_for(output_path, "the cores this cluster started have all stopped", process)
    finally:
        _stop(process)
    assert process.returncode == 0


def test_a_core_started_by_hand_is_not_said_to_be_gone(tmp_path: Path) -> None:
    """The finding (session 38): with a core the operator started by hand on the cluster's
    NATS (`venue serve --role core`), killing the cluster's own core had `venue cluster` say
    "no core is left running" while the hand-started core took over and served. It knows
    only its own cores: it says that they have stopped, and that another core may run."""
    first = free_block(SMALLEST_PORTS)
    config = ["--config", str(SAMPLE_CONFIG)]
    process, output_path = _cluster(tmp_path, *config, *SMALLEST_SHAPE, "--ports", str(first))
    by_hand_path = tmp_path / "by-hand.txt"
    by_hand: subprocess.Popen[bytes] | None = None
    try:
        text = _wait_for(output_path, "stop with Ctrl-C", process)
        nats = re.search(r"NATS \(1-node JetStream\): (\S+)", text)
        assert nats is not None, text
        command = [sys.executable, "-m", "cli.main", "serve", *config, "--role", "core"]
        command += ["--nats", nats.group(1), "--name", "core-h"]
        command += ["--data-dir", str(tmp_path / "by-hand")]
        with by_hand_path.open("wb") as output:
            by_hand = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT)
        _wait_for(by_hand_path, "waiting for the lease", by_hand)
        os.kill(_named(_children(process.pid), "core-a"), signal.SIGKILL)
        _wait_for(output_path, "core core-a stopped (killed by SIGKILL): see", process)
        _wait_for(by_hand_path, "tokenvenue core core-h active at seq", by_hand)
        # said within a watch (0.5 s) of core-a's exit, a term (10 s) before core-h took over
        assert "no core is left running" not in output_path.read_text()
        said = _wait_for(output_path, "the cores this cluster started have all stopped", process)
    finally:
        if by_hand is not None and by_hand.poll() is None:
            by_hand.send_signal(signal.SIGTERM)
            by_hand.wait(STOP_TIMEOUT_S)
        _stop(process)
    assert "unless another core runs (one started by hand" in said, said


def _admin(url: str, *command: str) -> subprocess.CompletedProcess[str]:
    arguments = [sys.executable, "-m", "cli.main", "admin", *command, "--url", url]
    arguments += ["--config", str(SAMPLE_CONFIG)]
    return subprocess.run(
        arguments, cwd=ROOT, capture_output=True, text=True, timeout=STOP_TIMEOUT_S
    )


def test_a_cluster_started_again_in_its_directory_goes_on_from_its_data() -> None:
    """The finding: `venue cluster --dir D` a second time stopped with a traceback (psycopg's
    DuplicateDatabase: the ledger's database was made anew at each start), and on other ports
    than the first run's its NATS node listened on the old ones (its config was kept), so the
    start waited 30 s and failed."""
    # PostgreSQL runs as its own user: the directory's parents must let it in (not pytest's)
    tmp_path = Path(tempfile.mkdtemp(prefix="venue-test-cluster-again-"))
    tmp_path.chmod(0o711)
    try:
        _start_twice(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _start_twice(tmp_path: Path) -> None:
    shape = ["--nats-nodes", "1", "--cores", "1", "--gateways", "1"]  # with PostgreSQL
    config = ["--config", str(SAMPLE_CONFIG)]
    count = 4  # a NATS node's two ports, PostgreSQL's, the gateway's
    first_run = free_block(count)
    for run, first in enumerate((first_run, free_block(2 * count) + count)):
        process, output_path = _cluster(tmp_path, *config, *shape, "--ports", str(first))
        try:
            _wait_for(output_path, "stop with Ctrl-C", process)
            opened = _admin(
                f"ws://127.0.0.1:{first + 3}/ws/trade", "open-account", "4242", "x", "DE"
            )
        finally:
            _stop(process)
        assert process.returncode == 0, output_path.read_text()
        if run == 0:
            assert opened.returncode == 0, opened.stderr
        else:  # the account of the first run is there: the stream and ledger went on
            assert "ACCOUNT_EXISTS" in opened.stderr, opened.stderr


def test_a_dir_that_is_a_file_is_refused_as_such(tmp_path: Path) -> None:
    """The finding: `--dir FILE` said only `venue: FILE: File exists`."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    command = [sys.executable, "-m", "cli.main", "cluster", "--config", str(SAMPLE_CONFIG)]
    command += ["--dir", str(a_file), *SMALLEST_SHAPE]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=REFUSAL_TIMEOUT_S
    )
    assert result.returncode == 2, result.stderr
    said = f"venue: {a_file}: not a directory (give a directory for --dir)"
    assert result.stderr.splitlines() == [said]
    assert "starting" not in result.stdout


def test_a_second_cluster_in_a_running_ones_dir_is_refused_touching_nothing() -> None:
    """The finding: a second `venue cluster --dir D` (other ports) started a NATS node on the
    first's store, failed on PostgreSQL's postmaster.pid, and then, stopping what it had
    "started", ran `pg_ctl stop` on the data directory: the first cluster's PostgreSQL."""
    tmp_path = Path(tempfile.mkdtemp(prefix="venue-test-cluster-twice-"))
    tmp_path.chmod(0o711)  # PostgreSQL runs as its own user: it must enter the directory
    try:
        _second_in_the_same_dir(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _second_in_the_same_dir(tmp_path: Path) -> None:
    shape = ["--nats-nodes", "1", "--cores", "1", "--gateways", "1"]  # with PostgreSQL
    config = ["--config", str(SAMPLE_CONFIG)]
    count = 4  # a NATS node's two ports, PostgreSQL's, the gateway's
    first = free_block(count)
    process, output_path = _cluster(tmp_path, *config, *shape, "--ports", str(first))
    try:
        _wait_for(output_path, "stop with Ctrl-C", process)
        command = [sys.executable, "-m", "cli.main", "cluster", "--dir", str(tmp_path / "cluster")]
        command += [*config, *shape, "--ports", str(free_block(2 * count) + count)]
        second = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=REFUSAL_TIMEOUT_S,
        )
        assert second.returncode == 2, second.stdout + second.stderr
        assert second.stderr.splitlines() == [
            f"venue: the cluster did not start: {tmp_path / 'cluster'} is in use by a running"
            f" cluster (pid {process.pid}): stop it first, or give another --dir"
        ]
        time.sleep(1)  # what a wrong stop would have done meanwhile is said within it
        assert "stopped" not in output_path.read_text(), output_path.read_text()
        with socket.create_connection(("127.0.0.1", first + 2), timeout=5):
            pass  # the first cluster's PostgreSQL still listens
        opened = _admin(f"ws://127.0.0.1:{first + 3}/ws/trade", "open-account", "4243", "y", "DE")
        assert opened.returncode == 0, opened.stderr
    finally:
        _stop(process)
    assert process.returncode == 0


def test_a_gateway_killed_is_named_as_the_cluster_stops(tmp_path: Path) -> None:
    """The finding: "a gateway stopped: stopping the cluster" said neither which, nor how,
    nor where its log is; and (session 28) the cluster it stopped then exited 0, as the
    operator's own stop does, so a supervisor restarting on failure never did."""
    first = free_block(SMALLEST_PORTS)
    config = ["--config", str(SAMPLE_CONFIG)]
    process, output_path = _cluster(tmp_path, *config, *SMALLEST_SHAPE, "--ports", str(first))
    try:
        _wait_for(output_path, "stop with Ctrl-C", process)
        os.kill(_named(_children(process.pid), "gw-a"), signal.SIGKILL)
        assert process.wait(STOP_TIMEOUT_S) == 1
    finally:
        _stop(process)
    text = output_path.read_text()
    log = tmp_path / "cluster" / "gw-0.log"
    assert f"gateway gw-a stopped (killed by SIGKILL): see {log}\n" in text, text
    assert "a gateway stopped: stopping the cluster" in text


def test_another_number_of_nats_nodes_in_a_clusters_dir_is_refused(tmp_path: Path) -> None:
    """The finding: a directory first run with `--nats-nodes 1`, started again with the
    default 3, showed its core an empty stream: the core refused its own snapshot as "ahead
    of the journal (last seq 0) ... was the journal truncated", which sent the operator after
    the wrong cause (and a core with no snapshot would have built the venue anew)."""
    first = free_block(SMALLEST_PORTS)
    config = ["--config", str(SAMPLE_CONFIG)]
    process, output_path = _cluster(tmp_path, *config, *SMALLEST_SHAPE, "--ports", str(first))
    try:
        _wait_for(output_path, "stop with Ctrl-C", process)
    finally:
        _stop(process)
    shape = ["--nats-nodes", "3", "--sqlite", "--cores", "1", "--gateways", "1"]
    again, output_path = _cluster(tmp_path, *config, *shape, "--ports", str(first))
    assert again.wait(REFUSAL_TIMEOUT_S) == 2
    directory = tmp_path / "cluster"
    assert output_path.read_text().splitlines()[-1] == (
        f"venue: the cluster did not start: {directory} holds the stream of a cluster of 1"
        " NATS node(s), not 3: give --nats-nodes 1, or another --dir"
    )
    assert not (directory / "nats" / "n2").exists(), "a node was made for nothing"


def test_a_second_ctrl_c_while_stopping_does_not_cut_the_stop_short(tmp_path: Path) -> None:
    """The finding: a second Ctrl-C (or SIGTERM) during the stop raised KeyboardInterrupt in
    the middle of it: exit 130, no "stopped", and the order of the stop lost."""
    # two cores and two gateways, stopped one after another: a stop long enough to hit
    shape = ["--nats-nodes", "1", "--sqlite", "--cores", "2", "--gateways", "2"]
    first = free_block(4)
    config = ["--config", str(SAMPLE_CONFIG)]
    process, output_path = _cluster(tmp_path, *config, *shape, "--ports", str(first))
    try:
        _wait_for(output_path, "stop with Ctrl-C", process)
        process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while "stopping the cluster" not in output_path.read_text():
            assert time.monotonic() < deadline, output_path.read_text()
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)  # while the first gateway stops
        assert process.wait(STOP_TIMEOUT_S) == 0, output_path.read_text()
    finally:
        _stop(process)
    text = output_path.read_text()
    assert text.endswith("tokenvenue cluster stopped\n"), text
    assert "already stopping the cluster" in text, text
