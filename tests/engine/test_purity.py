"""The engine and the ledger stay pure: no module imports I/O, clocks, randomness or logging."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"asyncio", "socket", "time", "random", "uuid", "os", "sqlite3", "logging"}
STORE_MODULES = {"store.py", "pg_store.py"}  # the stores: the modules allowed a database
PURE_FILES = sorted(
    path
    for package in ("engine", "settlement")
    for path in (ROOT / package).rglob("*.py")
    if path.name not in STORE_MODULES
)


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            roots.add("__import__")
    return roots


def test_there_are_modules_to_check() -> None:
    assert any(path.name == "venue.py" for path in PURE_FILES)


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_pure(path: Path) -> None:
    roots = imported_roots(ast.parse(path.read_text(), filename=str(path)))
    impure = roots & (FORBIDDEN | {"__import__"})
    assert not impure, f"{path.relative_to(ROOT)} imports {sorted(impure)}"
    assert "gateway" not in roots, f"{path.relative_to(ROOT)} reaches up into the gateway"


def test_the_checker_catches_an_impure_import() -> None:
    tree = ast.parse("import os.path\nfrom time import monotonic\nimport msgspec\n")
    assert imported_roots(tree) & FORBIDDEN == {"os", "time"}
