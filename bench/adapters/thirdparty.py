"""Third-party Python matching engines, when installed: found by import, never installed.

Each candidate names its import and PyPI package. Whether one is importable is checked with
`importlib.util.find_spec`, without importing it. No candidate has a driver written yet (none
was installed where this was built, so none could be checked against the naive book), so an
installed one is listed as skipped with that reason rather than run unchecked.
"""

import importlib.util
from collections.abc import Sequence

from bench.adapters.base import AdapterResult
from bench.workloads import Workload

# (import name, PyPI name) of engines worth comparing against.
CANDIDATES = (("nanobook", "nanobook"), ("matching_engine", "matching-engine"))


class ThirdPartyAdapter:
    """A placeholder for an engine from PyPI: reports why it is skipped."""

    def __init__(self, module: str, package: str) -> None:
        self.name = package
        self.module = module
        self.package = package

    def available(self) -> tuple[bool, str]:
        try:
            found = importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return False, f"not installed (PyPI `{self.package}`)"
        return False, f"installed, but no driver for `{self.module}` is written yet"

    def prepare(self, workload: Workload) -> Sequence[object]:
        raise NotImplementedError(self.available()[1])

    def run(self, commands: Sequence[object]) -> AdapterResult:
        raise NotImplementedError(self.available()[1])


def candidates() -> list[ThirdPartyAdapter]:
    return [ThirdPartyAdapter(module, package) for module, package in CANDIDATES]
