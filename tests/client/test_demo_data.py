"""client/demo_data.py: the directory a demo claims."""

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.failures import CommandFailed
from client import demo_data
from core.journal import FileJournal, segment_files
from core.venue_core import JOURNAL_FILE, warn_if_others_may_read


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the usual one: a plain mkdir() is 0755 under it
    try:
        yield
    finally:
        os.umask(previous)


def test_a_directory_a_demo_makes_is_owner_only(
    tmp_path: Path, usual_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding (session 32): the demo made its directory 0755 under umask 022, and so
    every `venue demo` start warned of a data directory open to others."""
    data_dir = tmp_path / "demo"
    demo_data.claim(data_dir)
    assert oct(data_dir.stat().st_mode & 0o777) == "0o700"
    with caplog.at_level(logging.WARNING, logger="venue"):
        warn_if_others_may_read(data_dir)
    assert [r.msg for r in caplog.records] == []


def test_a_demo_directory_made_before_is_closed_by_the_demo(
    tmp_path: Path, usual_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole-diff review of session 32: `mkdir(mode=0o700, exist_ok=True)` leaves an
    existing directory as it is, so a demo's own directory made before (0755, its marker
    0644) warned at every run; a marked one is the demo's, so the demo closes it."""
    data_dir = tmp_path / "demo"
    demo_data.claim(data_dir)
    data_dir.chmod(0o755)
    (data_dir / demo_data.MARKER).chmod(0o644)
    demo_data.claim(data_dir)
    assert oct(data_dir.stat().st_mode & 0o777) == "0o700"
    assert oct((data_dir / demo_data.MARKER).stat().st_mode & 0o777) == "0o600"
    with caplog.at_level(logging.WARNING, logger="venue"):
        warn_if_others_may_read(data_dir)
    assert [r.msg for r in caplog.records] == []


def test_a_demo_clears_every_segment_of_its_journal_and_refuses_a_venues(tmp_path: Path) -> None:
    """Since session 34 a journal is several files: a demo clearing only `journal.log` would
    leave the later ones, and the next run's journal would not follow on from them."""
    data_dir = tmp_path / "demo"
    demo_data.claim(data_dir)
    journal = FileJournal(data_dir / JOURNAL_FILE, segment_bytes=100)
    try:
        for seq in range(1, 10):
            journal.commit([(seq, b"z" * 60)])
    finally:
        journal.close()
    assert len(segment_files(data_dir / JOURNAL_FILE)) > 2
    demo_data.claim(data_dir)
    assert segment_files(data_dir / JOURNAL_FILE) == []
    venues = tmp_path / "venue"
    venues.mkdir()
    (venues / "journal.000000000000042.log").write_bytes(b"")  # its head archived
    with pytest.raises(CommandFailed, match="holds a venue's data"):
        demo_data.claim(venues)
