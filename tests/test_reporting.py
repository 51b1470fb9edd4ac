"""The run's last lines name what failed when a run ends in an internal error
(tests/reporting.py): a real pytest run, in its own process, of a small suite whose worker
breaks, as CI runs the suite (xdist workers)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SUITE = {
    "conftest.py": (
        "def pytest_runtest_logfinish(nodeid, location):\n"
        "    if nodeid.endswith('test_breaks_its_worker'):\n"
        "        raise RuntimeError('the worker broke after this test')\n"
    ),
    "test_small.py": (
        "def test_fails():\n"
        "    assert 1 == 2, 'failed on purpose'\n"
        "def test_breaks_its_worker():\n"
        "    pass\n"
    ),
}


def run_suite(
    directory: Path, *options: str, suite: dict[str, str] = SUITE
) -> subprocess.CompletedProcess[str]:
    for name, text in suite.items():
        (directory / name).write_text(text)
    command = [sys.executable, "-m", "pytest", "-p", "tests.reporting", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, "-q", *options],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("options", [(), ("-n", "1")], ids=["one process", "an xdist worker"])
def test_an_internal_error_ends_the_output_with_the_failures_and_the_error(
    tmp_path: Path, options: tuple[str, ...]
) -> None:
    ran = run_suite(tmp_path, *options)
    assert ran.returncode == pytest.ExitCode.INTERNAL_ERROR, ran.stdout + ran.stderr
    tail = ran.stdout.strip().splitlines()[-12:]
    assert "== run digest: 1 failed report(s) ==" in tail, tail
    assert "  test_small.py::test_fails (call): AssertionError: failed on purpose" in tail
    assert tail[-1].strip() == "RuntimeError: the worker broke after this test", tail


def test_a_run_that_ends_normally_has_no_digest(tmp_path: Path) -> None:
    """pytest's own short summary names the failures then: the digest would repeat it."""
    ran = run_suite(tmp_path, suite={"test_small.py": "def test_fails():\n    assert False\n"})
    assert ran.returncode == pytest.ExitCode.TESTS_FAILED
    assert "FAILED test_small.py::test_fails" in ran.stdout
    assert "run digest" not in ran.stdout


def test_a_report_that_does_not_encode_to_utf8_reaches_the_controller(tmp_path: Path) -> None:
    """A lone surrogate in a worker's report (its captured log, its failure's message)."""
    suite = {
        "test_small.py": (
            "import logging\n"
            "def undecoded(byte):\n"
            "    return bytes([byte]).decode(errors='surrogateescape')\n"
            "def test_logs_an_undecoded_byte():\n"
            "    logging.getLogger('x').warning('read %s', undecoded(0xff))\n"
            "    raise ValueError('bad ' + undecoded(0xfe))\n"
            "def test_runs_after_it():\n"
            "    pass\n"
        )
    }
    ran = run_suite(tmp_path, "-n", "1", "-rA", suite=suite)
    assert ran.returncode == pytest.ExitCode.TESTS_FAILED, ran.stdout + ran.stderr
    assert "1 failed, 1 passed" in ran.stdout
    assert "read \\udcff" in ran.stdout  # the captured log, escaped
    assert "ValueError: bad \\udcfe" in ran.stdout


def test_a_warning_that_does_not_encode_to_utf8_reaches_the_controller(tmp_path: Path) -> None:
    """An exception in a thread, with a lone surrogate in its message: pytest's warning of it
    carries the message, which xdist's worker sent as it was."""
    suite = {
        "test_small.py": (
            "import threading\n"
            "def fail():\n"
            "    raise ValueError('bad ' + bytes([0xfd]).decode(errors='surrogateescape'))\n"
            "def test_a_thread_fails():\n"
            "    thread = threading.Thread(target=fail)\n"
            "    thread.start()\n"
            "    thread.join()\n"
            "def test_runs_after_it():\n"
            "    pass\n"
        )
    }
    ran = run_suite(tmp_path, "-n", "1", suite=suite)
    assert "INTERNALERROR" not in ran.stdout + ran.stderr, ran.stdout + ran.stderr
    assert "2 passed, 1 warning" in ran.stdout, ran.stdout
    assert "ValueError: bad \\udcfd" in ran.stdout
