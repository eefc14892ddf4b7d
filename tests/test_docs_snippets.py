"""Every Python snippet of the docs pages below runs, against local servers.

The pages' snippets name ``ws://127.0.0.1:8765/`` (an echo server) and
``wss://localhost:8766/`` (a TLS echo server whose certificate no system trusts); each
snippet runs in a fresh interpreter with those replaced by this test's servers.
"""

from __future__ import annotations

import ssl

import pytest
from conftest import WSServerFactory
from helpers import ROOT, run_python

PAGES = ("faq.md", "quickstart.md")
PLAIN = "ws://127.0.0.1:8765/"
SECURE = "wss://localhost:8766/"


def _snippets(page: str) -> list[tuple[str, str]]:
    """``(section title, code)`` of every python block, in page order."""
    found: list[tuple[str, str]] = []
    section, code, inside = "", [], False
    for line in (ROOT / "docs" / page).read_text(encoding="utf-8").splitlines():
        if inside:
            if line.startswith("```"):
                found.append((f"{page}: {section}", "\n".join(code) + "\n"))
                inside = False
            else:
                code.append(line)
        elif line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("```python"):
            code, inside = [], True
    return found


SNIPPETS = [snippet for page in PAGES for snippet in _snippets(page)]


@pytest.mark.parametrize("page", PAGES)
def test_the_page_has_snippets(page: str) -> None:
    mine = _snippets(page)
    assert len(mine) >= 4
    assert all(PLAIN in code or SECURE in code for _, code in mine)


@pytest.mark.parametrize(("section", "code"), SNIPPETS, ids=[s for s, _ in SNIPPETS])
def test_faq_snippet_runs(
    ws_server: WSServerFactory, tls_server_ctx: ssl.SSLContext, section: str, code: str
) -> None:
    plain = ws_server()
    secure = ws_server(ssl_context=tls_server_ctx)
    code = code.replace(PLAIN, plain.url + "/").replace(SECURE, secure.url + "/")
    result = run_python(code, timeout=30, pythonpath=(ROOT,))
    assert result.returncode == 0, f"{section}:\n{result.stdout}\n{result.stderr}"
    assert (result.stdout + result.stderr).strip(), "each snippet shows something"
    assert "Bearer secret" not in result.stdout + result.stderr  # the trace redacts it
