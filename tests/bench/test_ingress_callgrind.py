"""`python -m bench.ingress_callgrind`'s stretch, run outside callgrind with do-nothing marks
(no C compiler, no valgrind headers): a batch stretch is answered without an error, and a dump's
total is read."""

import sys
from pathlib import Path

from bench import ingress_bench, ingress_callgrind, server_process
from core import venue_core
from tests.sample_config import SAMPLE_CONFIG


class _NoMarks:
    """The marks outside callgrind, without building their library (no C compiler needed)."""

    def cg_zero(self) -> None:
        pass

    def cg_dump(self) -> None:
        pass


def test_a_batch_stretch_is_answered_without_an_error_and_puts_back_what_it_held_still() -> None:
    """The GIL's switch interval and the snapshot interval are the process's: the later tests
    on this worker run with them as they were."""
    switch_interval, snapshot_interval = sys.getswitchinterval(), venue_core.SNAPSHOT_INTERVAL_S
    work = ingress_callgrind.stretch("batch", ingress_bench.WINDOW, SAMPLE_CONFIG, _NoMarks())
    server_process.run_async(work)  # type: ignore[arg-type]  # SystemExit on an error answer
    put_back = (sys.getswitchinterval(), venue_core.SNAPSHOT_INTERVAL_S)
    assert put_back == (switch_interval, snapshot_interval)


def test_a_dumps_total_is_its_summary(tmp_path: Path) -> None:
    dump = tmp_path / "cg.out.1-01"
    dump.write_text("events: Ir\nsummary: 12345\nfn=(1) x\n0 12345\ntotals: 99999\n")
    assert ingress_callgrind.measured_ir(dump) == 12345
