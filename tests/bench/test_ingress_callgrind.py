"""`python -m bench.ingress_callgrind`'s stretch, run outside callgrind (its marks are no-ops
there): a batch stretch is answered without an error, and a dump's total is read."""

from pathlib import Path

import pytest

from bench import ingress_bench, ingress_callgrind, server_process
from tests.sample_config import SAMPLE_CONFIG


def test_a_batch_stretch_is_answered_without_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = ingress_callgrind.build_marks(tmp_path)
    monkeypatch.setenv(ingress_callgrind.MARKS_ENV, str(marks))
    work = ingress_callgrind.stretch("batch", ingress_bench.WINDOW, SAMPLE_CONFIG)
    server_process.run_async(work)  # type: ignore[arg-type]  # SystemExit on an error answer


def test_a_dumps_total_is_its_summary(tmp_path: Path) -> None:
    dump = tmp_path / "cg.out.1-01"
    dump.write_text("events: Ir\nsummary: 12345\nfn=(1) x\n0 12345\ntotals: 99999\n")
    assert ingress_callgrind.measured_ir(dump) == 12345
