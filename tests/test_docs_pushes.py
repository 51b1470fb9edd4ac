"""docs/protocol.md §8 names every field of the private stream's pushes as
gateway/reports.py encodes them, and no other: the field tables of §8.2 (`exec`) and §8.6
(`corporate_action`), and the shapes written inline in §8.1, §8.3 and §8.4."""

import re

import msgspec
import pytest

from gateway.reports import (
    BalanceReport,
    CorporateActionReport,
    ExecReport,
    Leg,
    Push,
    SettlementReport,
)
from tests.conftest import ROOT

PAGE = (ROOT / "docs" / "protocol.md").read_text()


def section(heading: str) -> str:
    """The text of the section whose heading starts with `heading`, up to the next one."""
    start = PAGE.index(f"\n{heading}")
    end = PAGE.find("\n#", start + 1)
    return PAGE[start:end]


def table_fields(text: str) -> set[str]:
    """Every backticked name in the first column of the section's field table, less what
    its parentheses say of the values (`type` (`limit`/`market`))."""
    table = text.split("| field |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| ([^|]*) \|", table, re.MULTILINE)
    return {
        name for row in rows for name in re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", row))
    }


def inline_fields(text: str, lead: str) -> set[str]:
    """The names of the first `{a, b, ...}` after `lead` in the text."""
    words = r"\s+".join(re.escape(word) for word in lead.split())  # however the doc wraps
    braces = re.search(words + r"\s*`?\{([^}]*)\}", text)
    assert braces, f"{lead!r} not found in docs/protocol.md"
    return {name.strip() for name in braces.group(1).split(",")}


def wire_fields(struct: type[msgspec.Struct]) -> set[str]:
    return set(struct.__struct_encode_fields__)


@pytest.mark.parametrize(
    ("heading", "struct"),
    [("### 8.2", ExecReport), ("### 8.6", CorporateActionReport)],
)
def test_each_field_table_is_the_reports(heading: str, struct: type[msgspec.Struct]) -> None:
    assert table_fields(section(heading)) == wire_fields(struct)


@pytest.mark.parametrize(
    ("heading", "lead", "struct"),
    [
        ("### 8.2", "`", Push),  # `{ch: "account", seq, epoch, type: "exec", ts, data: {...}}`
        ("### 8.3", "data:", BalanceReport),
        ("### 8.4", "data:", SettlementReport),
        ("### 8.4", "Each leg is", Leg),
    ],
)
def test_each_inline_shape_is_the_reports(
    heading: str, lead: str, struct: type[msgspec.Struct]
) -> None:
    names = {name.split(":")[0] for name in inline_fields(section(heading), lead)}
    assert names == wire_fields(struct)
