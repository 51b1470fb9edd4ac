"""A real local cluster (`cluster.local.LocalCluster`) for a test module, in a directory of its
own in the run's temporary directory (/dev/shm when tests/conftest.py chose it, else /tmp),
kept after the run only when asked."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cluster.local import LocalCluster
from tests.sample_config import SAMPLE_CONFIG


@contextmanager
def local_cluster(name: str, config: Path = SAMPLE_CONFIG, **shape: Any) -> Iterator[LocalCluster]:
    """`LocalCluster` of `config` (the sample's by default) and `shape` (nodes, cores,
    gateways, PostgreSQL) in a new directory `venue-test-<name>-*`, enterable by others
    (PostgreSQL runs as the postgres user inside it); removed afterwards unless
    `VENUE_KEEP_CLUSTER` is set (to read the logs after a failure)."""
    directory = Path(tempfile.mkdtemp(prefix=f"venue-test-{name}-"))
    directory.chmod(0o711)
    try:
        with LocalCluster(directory, config, **shape) as running:
            yield running
    finally:
        if not os.environ.get("VENUE_KEEP_CLUSTER"):
            shutil.rmtree(directory, ignore_errors=True)
