"""Every relative link of README.md and docs/*.md reaches a file of the repository, and a
`#fragment` into a page one of its headings, slugged as GitHub slugs them; every file path
and test the pages name in backticks exists."""

import re
from collections import Counter
from pathlib import Path

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
# `gateway/candles.py`, `tests/gateway/test_web_page.py`: a path of the repository
PATH = re.compile(r"`([a-z_]+/[A-Za-z0-9_./-]+\.(?:py|js|css|html|toml|json|md|sh|svg))`")
TEST = re.compile(r"`(test_[a-z0-9_]+)`")  # a test a page cites as its evidence


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of the page's headings (a repeated one gets `-1`, `-2`...), code
    blocks left out."""
    seen: Counter[str] = Counter()
    found = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (heading := re.match(r"#+ (.*)", line)):
            name = slug(heading.group(1))
            found.add(f"{name}-{seen[name]}" if seen[name] else name)
            seen[name] += 1
    return found


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not the repository's
            continue
        path, _, fragment = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{target}: no such heading")
    return broken


def test_every_link_of_the_docs_reaches_its_target() -> None:
    broken = {page.name: links for page in PAGES if (links := broken_links(page))}
    assert not broken, f"links to fix: {broken}"


def test_every_path_the_docs_name_exists() -> None:
    named = {(page.name, path) for page in PAGES for path in PATH.findall(page.read_text())}
    missing = sorted((page, path) for page, path in named if not (ROOT / path).exists())
    assert not missing, f"paths named but absent: {missing}"


def test_every_test_the_docs_cite_exists() -> None:
    defined = {
        name
        for source in (ROOT / "tests").rglob("test_*.py")
        for name in re.findall(r"^\s*(?:async )?def (test_[a-z0-9_]+)", source.read_text(), re.M)
    }
    cited = {name for page in PAGES for name in TEST.findall(page.read_text())}
    assert cited, "no test cited: the pattern no longer matches the pages"
    assert not cited - defined, f"tests cited but absent: {sorted(cited - defined)}"
