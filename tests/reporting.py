"""How the run reports, for CI, which shows only the tail of `make test`'s output.

Every report reaches the controller: an xdist worker sends each report as execnet data, whose
strings must encode to UTF-8. A lone surrogate in a report or a warning (a captured log
line, an exception's message) made the send raise: the worker ended its session with
an internal error, its file's other tests undone, and xdist's controller failed on `assert not
crashitem`, the signature of stop 46's CI (what broke that worker is not known: its error was
past the tail). Such strings are now sent with the surrogate escaped (`\\udcff`).

The run's last lines name what failed: a run that ends in an INTERNALERROR prints no short
summary, and its long traceback pushed the failed test's name and the worker's error out of
CI's tail (stop 46: "1 failed" and xdist's assertion, nothing else). In the process that
reports (the controller, or the only process), each failed report and each internal error is
noted, and a short digest of them printed after everything else when the run ended in an
internal error or was interrupted."""

import sys
import warnings
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

DIGEST_FAILURES_MAX = 8  # failures listed by name; the rest counted
DIGEST_ERROR_LINES = 8  # an internal error's last lines (its exception, where it was raised)


@dataclass
class Digest:
    failures: list[str] = field(default_factory=list)  # "nodeid (phase): last line"
    internal_errors: list[list[str]] = field(default_factory=list)  # each one's last lines
    exit_status: int = 0

    def lines(self) -> list[str]:
        shown = self.failures[:DIGEST_FAILURES_MAX]
        out = ["", f"== run digest: {len(self.failures)} failed report(s) =="]
        out += [f"  {line}" for line in shown]
        if len(self.failures) > len(shown):
            out.append(f"  ... and {len(self.failures) - len(shown)} more")
        for number, error in enumerate(self.internal_errors, 1):
            out.append(f"  internal error {number}, its last lines:")
            out += [f"    {line}" for line in error]
        return out


_digest = Digest()


def encodable(data: Any) -> Any:
    """`data` (a report's serialized form: dicts, lists, tuples, strings, numbers) with every
    string that does not encode to UTF-8 escaped where it fails."""
    if isinstance(data, str):
        try:
            data.encode()
        except UnicodeEncodeError:
            return data.encode(errors="backslashreplace").decode()
        return data
    if isinstance(data, dict):
        return {encodable(key): encodable(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(encodable(item) for item in data)
    return data


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(report: Any) -> Generator[None, Any, Any]:
    return encodable((yield))


@pytest.hookimpl(tryfirst=True)
def pytest_warning_recorded(warning_message: warnings.WarningMessage) -> None:
    """A warning's text escaped likewise, before xdist's worker sends it (its text is sent as
    it is: an unhandled thread exception's warning carries the exception's message)."""
    text = str(warning_message.message)
    escaped = encodable(text)
    if escaped is not text:
        warning_message.message = _warning_like(warning_message.category, escaped)


def _warning_like(category: type[Warning], text: str) -> Warning:
    try:
        return category(text)
    except Exception:  # a category whose constructor takes other arguments
        return UserWarning(text)


def _reporting(config: pytest.Config) -> bool:
    """Not an xdist worker: its reports reach the controller, which prints them."""
    return not hasattr(config, "workerinput")


def _why(text: str) -> str:
    """A failure's words: its first `E   ` line (the exception pytest shows, type and
    message), else its first line (a failure without a traceback, `pytrace=False`)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line.removeprefix("E").strip() for line in lines if line.startswith("E ")]
    return (said or lines or ["(no message)"])[0][:200]


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _digest.failures.append(f"{report.nodeid} ({report.when}): {_why(report.longreprtext)}")


def pytest_internalerror(excrepr: object) -> None:
    lines = [line for line in str(excrepr).splitlines() if line.strip()]
    _digest.internal_errors.append([line[:200] for line in lines[-DIGEST_ERROR_LINES:]])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _digest.exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """After pytest's own last lines: the digest, when pytest's short summary was not printed
    (an internal error) or may not say why (an interruption)."""
    ended_abnormally = _digest.exit_status in (
        pytest.ExitCode.INTERRUPTED,
        pytest.ExitCode.INTERNAL_ERROR,
    )
    if _reporting(config) and (ended_abnormally or _digest.internal_errors):
        sys.stdout.write("\n".join(_digest.lines()) + "\n")
        sys.stdout.flush()
