"""How a command line fails: one line on stderr and exit status 2, never a traceback.

Owns `CommandFailed` (what a command raises when its input or its surroundings make it
impossible: a missing file, a busy port, a locked data directory), the one-line argparse
parser and `run_main`, the last-resort handler every entry point (`venue`, `python -m ...`)
runs its work under. Commands hold no try/except of their own for these: they raise, and
this turns the error into `<prog>: <message>`. A bug (any other exception) still shows its
traceback: that is for a developer, not something the operator caused.
"""

import argparse
import errno
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from cli.hangup import interrupt_status
from client.urls import EXAMPLE_URL, TRADE_PATH, is_websocket_url
from core.config import ConfigError
from core.journal import JournalError, refuse_dangling_link
from gateway.auth import KeyStoreError

EXIT_FAILED = 2  # bad input or surroundings: the same status argparse uses for bad flags
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it (128 + SIGINT)


class CommandFailed(Exception):
    """The command cannot do its work; the message says why and, where it can, what to do."""


# Errors whose message already says what is wrong, in the operator's terms.
# A `KeyStoreError` at start: a key both in venue.toml and in the data dir's api_keys.json.
EXPLAINED: tuple[type[BaseException], ...] = (
    CommandFailed,
    ConfigError,
    JournalError,
    KeyStoreError,
)


class OneLineParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line: what is wrong and where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_FAILED, f"{self.prog}: {message} (see {self.prog} --help)\n")


def run_main(prog: str, work: Callable[[], int]) -> int:
    """Run `work`; an explained error or an OSError becomes one line on stderr, exit 2."""
    try:
        return work()
    except EXPLAINED as failed:
        return _fail(prog, str(failed))
    except BrokenPipeError:  # the reader (`| head`, say) has gone: nothing left to say
        sys.stderr.close()
        return 0
    except OSError as failed:  # last resort: a file or socket the command did not expect
        return _fail(prog, describe_os_error(failed))
    except KeyboardInterrupt:  # Ctrl-C, or a SIGTERM or SIGHUP taken as one (`cli.hangup`)
        return interrupt_status()


def describe_os_error(error: OSError) -> str:
    """`path: reason` for a file error, the reason alone otherwise; no errno numbers."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno == errno.EADDRINUSE:
        reason = f"{reason} (is another venue running on that port?)"
    if error.filename is not None:
        return f"{error.filename}: {reason}"
    return reason


def check_data_dir(path: Path) -> None:
    """Refuse a data directory that exists as something else (a file), or is a symbolic link
    to nothing: `mkdir` would say only "File exists", which reads as if the directory were
    the problem's answer."""
    refuse_dangling_link(path, "making a data directory there")
    if path.exists() and not path.is_dir():
        raise CommandFailed(f"{path}: not a directory (give a directory for --data-dir)")


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    return EXIT_FAILED


def check_trade_url(url: str) -> None:
    """Refuse a `--url` that cannot reach the trade endpoint, saying which path is wanted."""
    try:  # urllib parses the host and port only when asked, and raises ValueError then
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number, or not within 0..65535
    except ValueError as malformed:
        raise CommandFailed(
            f"--url {url}: {malformed}: give a websocket URL, e.g. {EXAMPLE_URL}"
        ) from None
    if not is_websocket_url(url) or not parts.hostname:
        raise CommandFailed(f"--url {url}: give a websocket URL, e.g. {EXAMPLE_URL}")
    if parts.path != TRADE_PATH:
        raise CommandFailed(
            f"--url {url}: the path must be {TRADE_PATH} (the trade endpoint), e.g. {EXAMPLE_URL}"
        )
