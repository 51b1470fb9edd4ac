"""docs/web.md's table of the browser tests is tests/gateway/test_web_page.py's tests, each
once, and no other."""

import re

from tests.conftest import ROOT


def test_the_web_pages_test_table_is_its_tests() -> None:
    page = (ROOT / "docs" / "web.md").read_text()
    listed = re.findall(r"^\| `(test_[a-z0-9_]+)` \|", page, re.MULTILINE)
    source = (ROOT / "tests" / "gateway" / "test_web_page.py").read_text()
    defined = set(re.findall(r"^(?:async )?def (test_[a-z0-9_]+)", source, re.MULTILINE))
    assert len(listed) == len(set(listed)), "a test has two rows in docs/web.md"
    assert set(listed) == defined, (
        f"docs/web.md lacks {sorted(defined - set(listed))}, "
        f"lists tests that are gone {sorted(set(listed) - defined)}"
    )
