"""docs/configuration.md lists every key that `venue.toml` and `core/config.py` know."""

import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from core.config import VenueConfig
from tests.conftest import ROOT

PAGE = ROOT / "docs" / "configuration.md"
SECTION = re.compile(r"^#+ `\[{1,2}([a-z_.]+)\]{1,2}`")  # `## `[venue]`` or `## `[[assets]]``
ROW_KEY = re.compile(r"^\| `([a-z_]+)` \|")


def documented(page: Path) -> set[tuple[str, str]]:
    """(section, key) of every table row under a `[section]` heading."""
    return set(_rows(page, ROW_KEY))


def _rows(page: Path, row_pattern: re.Pattern[str]) -> dict[tuple[str, str], str | None]:
    """(section, key) of every table row under a `[section]` heading that `row_pattern`
    matches → its second group (a column), or None where it has none."""
    rows: dict[tuple[str, str], str | None] = {}
    section = None
    for line in page.read_text().splitlines():
        heading = SECTION.match(line)
        if heading:
            section = heading.group(1)
        elif line.startswith("#"):
            section = None
        elif section and (row := row_pattern.match(line)):
            rows[(section, row.group(1))] = row.group(2) if row.re.groups > 1 else None
    return rows


def schema_keys() -> set[tuple[str, str]]:
    """(section, key) of every field of every table `core/config.py` decodes."""
    keys: set[tuple[str, str]] = set()
    root = msgspec.inspect.type_info(VenueConfig)
    assert isinstance(root, msgspec.inspect.StructType)
    for field in root.fields:
        _walk(field.name, field.type, keys)
    return keys


def _walk(section: str, kind: Any, keys: set[tuple[str, str]]) -> None:
    if isinstance(kind, msgspec.inspect.VarTupleType | msgspec.inspect.ListType):
        kind = kind.item_type
    if not isinstance(kind, msgspec.inspect.StructType):
        return
    for field in kind.fields:
        keys.add((section, field.name))
        _walk(f"{section}.{field.name}", field.type, keys)  # a nested table: its own section


def sample_keys() -> set[tuple[str, str]]:
    """(section, key) of every key the sample `venue.toml` sets, one table deep."""
    keys = set()
    for section, value in tomllib.loads((ROOT / "venue.toml").read_text()).items():
        for table in value if isinstance(value, list) else [value]:
            keys.update((section, key) for key in table)
    return keys


def test_every_config_key_is_documented() -> None:
    page = documented(PAGE)
    missing = (schema_keys() | sample_keys()) - page
    assert not missing, f"add these keys to docs/configuration.md: {sorted(missing)}"


def test_the_page_lists_no_key_the_config_does_not_have() -> None:
    stale = documented(PAGE) - schema_keys()
    assert not stale, f"docs/configuration.md lists keys config.py does not read: {sorted(stale)}"


def test_the_readme_links_the_page() -> None:
    assert "docs/configuration.md" in (ROOT / "README.md").read_text()


ROW_DEFAULT = re.compile(r"^\| `([a-z_]+)` \|[^|]*\|[^|]*\| ([^|]*) \|")


def documented_defaults(page: Path) -> dict[tuple[str, str], str]:
    """(section, key) → the default column of its row, as written."""
    return {key: (column or "").strip() for key, column in _rows(page, ROW_DEFAULT).items()}


def schema_defaults() -> dict[tuple[str, str], str]:
    """(section, key) → its default as the page writes it: TOML in backticks, `required`, or
    `none` for an optional key that has no value."""
    defaults = {}
    root = msgspec.inspect.type_info(VenueConfig)
    assert isinstance(root, msgspec.inspect.StructType)
    for table in root.fields:
        kind = table.type
        if isinstance(kind, msgspec.inspect.VarTupleType | msgspec.inspect.ListType):
            kind = kind.item_type
        assert isinstance(kind, msgspec.inspect.StructType), table.name
        for field in kind.fields:
            defaults[(table.name, field.name)] = _as_written(field)
    return defaults


def _as_written(field: msgspec.inspect.Field) -> str:
    if field.required:
        return "required"
    value = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple | list):
        return "`[]`" if not value else f"`{list(value)}`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return f"`{value}`"


def test_every_default_on_the_page_is_the_configs() -> None:
    page = documented_defaults(PAGE)
    wrong = {
        key: (page.get(key), default)
        for key, default in schema_defaults().items()
        # "none (no cap)": the page may say what no value means
        if page.get(key, "").split(" (")[0] != default
    }
    assert not wrong, f"docs/configuration.md's default (page, config.py) differs: {wrong}"
