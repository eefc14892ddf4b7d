"""The public surface of ``wspool``: what ``__all__`` exports, that it is documented,
and that internals do not leak into it.

These are invariants, not a frozen list of names, so they hold while the internals are
refactored.  The one explicit list is the package layout below: update it when a module
or subpackage is added, renamed or removed.
"""

from __future__ import annotations

import importlib
import inspect
import re
import types
from pathlib import Path

import pytest
from helpers import ROOT

import wspool

#: The modules and subpackages of wspool (``wspool/<name>.py``, ``wspool/<name>/``)
#: that ``import wspool`` binds as attributes of the package.  Besides dunders and the
#: names in ``__all__``, these are the only attributes the package may have.
PACKAGE_MODULES = frozenset(
    {
        "_reprs",
        "abnf",
        "app",
        "client",
        "exceptions",
        "opening",
        "options",
        "pool",
        "processes",
        "protocol",
        "transport",
    }
)

#: Modules imported only on demand (``import wspool`` does not load them), so they show
#: up as package attributes only once some code imported them.
ON_DEMAND_MODULES = frozenset({"demofeed", "sinks"})

#: Subpackages whose own ``__all__`` is checked too.
SUBPACKAGES = ("wspool.pool", "wspool.protocol", "wspool.transport")

#: Core names the top level re-exports on purpose (websocket-client has them at the top
#: level, or users pass them to wspool.connect / Pool.connect).
REEXPORTED_FROM_CORE = frozenset({"CloseCode", "DeflateOptions", "Opcode"})

#: Names of ``__all__`` that README.md and docs/*.md do not mention yet (reported;
#: the docs are not edited by these tests).  Documenting one makes its test XPASS,
#: which fails: then take it out of this set.
KNOWN_UNDOCUMENTED: frozenset[str] = frozenset()

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _isort_key(name: str) -> tuple[int, list[object]]:
    """The order of ruff's RUF022 (the project's lint rule for ``__all__``):
    SCREAMING_CASE first, then CamelCase, then the rest; natural order in each."""
    group = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return group, natural


def _documented_code() -> str:
    """Everything README.md and docs/*.md show as code (fenced blocks, `inline`)."""
    pieces: list[str] = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        fenced = re.findall(r"```.*?```", text, re.DOTALL)
        pieces += fenced
        rest = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
        pieces += re.findall(r"`[^`\n]+`", rest)
    return "\n".join(pieces)


def _mentions(text: str, name: str) -> bool:
    return (
        re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)|wspool\.{re.escape(name)}(?!\w)", text)
        is not None
    )


# ------------------------------------------------------------------ wspool.__all__


def test_all_is_sorted_without_duplicates_or_private_names() -> None:
    names = list(wspool.__all__)
    assert names == sorted(names, key=_isort_key)
    assert len(names) == len(set(names))
    assert [n for n in names if n.startswith("_") and not _is_dunder(n)] == []


def test_every_name_in_all_resolves() -> None:
    missing = [name for name in wspool.__all__ if not hasattr(wspool, name)]
    assert missing == []


def test_star_import_binds_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from wspool import *", namespace)
    namespace.pop("__builtins__", None)
    assert sorted(namespace) == sorted(wspool.__all__)
    assert all(namespace[name] is getattr(wspool, name) for name in wspool.__all__)


def test_public_classes_and_functions_are_defined_in_wspool() -> None:
    foreign = {
        name: obj.__module__
        for name in wspool.__all__
        if inspect.isclass(obj := getattr(wspool, name)) or inspect.isfunction(obj)
        if not obj.__module__.startswith("wspool")
    }
    assert foreign == {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=pytest.mark.xfail(strict=True, reason="not in README.md or docs/*.md yet"),
        )
        if name in KNOWN_UNDOCUMENTED
        else name
        for name in wspool.__all__
    ],
)
def test_every_public_name_is_documented(name: str) -> None:
    """Each exported name appears as code (`inline` or in a fenced block) in README.md
    or docs/*.md, bare or as ``wspool.<name>``."""
    assert _mentions(_documented_code(), name), f"{name} is not in README.md or docs/*.md"


def test_known_undocumented_names_are_exported() -> None:
    """KNOWN_UNDOCUMENTED does not list names that are gone from ``__all__``."""
    assert set(KNOWN_UNDOCUMENTED) <= set(wspool.__all__)


# ------------------------------------------------------------------ no leaks


def test_package_attributes_outside_all_are_only_its_modules() -> None:
    extra = {n for n in vars(wspool) if not _is_dunder(n) and n not in wspool.__all__}
    allowed = PACKAGE_MODULES | ON_DEMAND_MODULES
    assert extra <= allowed, f"not in __all__ nor a module: {extra - allowed}"
    for name in extra:
        module = getattr(wspool, name)
        assert isinstance(module, types.ModuleType), name
        assert module.__name__ == f"wspool.{name}"


def test_module_allow_list_matches_the_package_layout() -> None:
    """Every PACKAGE_MODULES entry is a module file or a subpackage of wspool/."""
    package = Path(wspool.__file__).parent
    on_disk = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    on_disk |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert on_disk >= PACKAGE_MODULES, f"stale entries: {PACKAGE_MODULES - on_disk}"


def test_core_internals_are_not_exported_at_the_top_level() -> None:
    protocol = importlib.import_module("wspool.protocol")
    transport = importlib.import_module("wspool.transport")
    core = set(protocol.__all__) | set(transport.__all__)
    assert set(wspool.__all__) & core <= REEXPORTED_FROM_CORE
    for name in ("ClientProtocol", "ProtocolState", "ProxyConfig", "open_socket", "parse_url"):
        assert name not in wspool.__all__
        assert not hasattr(wspool, name)
    for name in REEXPORTED_FROM_CORE & set(wspool.__all__):
        assert getattr(wspool, name) is getattr(protocol, name)  # one object, two names


# ------------------------------------------------------------------ subpackages


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_subpackage_all_resolves_and_is_sorted(package: str) -> None:
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert [n for n in names if not hasattr(module, n)] == []
    assert names == sorted(names, key=_isort_key)
    assert len(names) == len(set(names))
