"""The documentation site's structure, checked without building it.

The strict mkdocs build (``.ci/run``) catches broken links and docstrings it cannot
read; these checks need no docs dependency and name the exact gap: a page left out
of the nav, an option missing from the options table, a public name without a
reference entry, a ``::: target`` that does not import.
"""

from __future__ import annotations

import importlib
import re

import pytest
from helpers import ROOT

import wspool
from wspool.options import OPTIONS

DOCS = ROOT / "docs"
API = DOCS / "api"


def _nav_pages() -> list[str]:
    """The page paths of mkdocs.yml's nav (``- Title: path.md`` lines)."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:\n", 1)[1]
    return re.findall(r"^\s+- [^:\n]+: (\S+\.md)\s*$", nav, re.MULTILINE)


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    pages = {
        path.relative_to(DOCS).as_posix()
        for path in DOCS.rglob("*.md")
        if not path.relative_to(DOCS).as_posix().startswith("_")
    }
    nav = _nav_pages()
    assert len(nav) == len(set(nav)), "a page is listed twice"
    assert sorted(pages - set(nav)) == [], "pages missing from the nav of mkdocs.yml"
    assert sorted(set(nav) - pages) == [], "nav entries without a page"


def _api_targets() -> list[str]:
    return [
        target
        for path in sorted(API.glob("*.md"))
        for target in re.findall(r"^::: (\S+)$", path.read_text(encoding="utf-8"), re.M)
    ]


@pytest.mark.parametrize("target", _api_targets())
def test_reference_targets_import(target: str) -> None:
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return
    pytest.fail(f"{target} does not import")


def test_every_public_name_has_a_home_in_the_reference() -> None:
    text = "\n".join(path.read_text(encoding="utf-8") for path in API.glob("*.md"))
    targets = {target.rsplit(".", 1)[-1] for target in _api_targets()}
    inline = set(re.findall(r"`(?:wspool\.)?([A-Za-z_][A-Za-z0-9_]*)`", text))
    missing = [name for name in wspool.__all__ if name not in targets | inline]
    assert missing == []


def test_the_options_table_lists_every_option_and_only_those() -> None:
    text = (API / "options.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z0-9_]+)` \|", text, re.MULTILINE)
    assert len(rows) == len(set(rows)), "an option is listed twice"
    assert sorted(set(OPTIONS) - set(rows)) == [], "options missing from docs/api/options.md"
    assert sorted(set(rows) - set(OPTIONS)) == [], "rows for options that do not exist"
