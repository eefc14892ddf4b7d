"""Every Python snippet of the docs pages below runs, against local servers.

The pages' snippets name placeholder addresses and files; each snippet runs in a fresh
interpreter with them replaced by this test's servers and files:

* ``ws://127.0.0.1:8765/``: an echo server (it picks the first subprotocol offered);
* ``wss://localhost:8766/`` (also ``wss://127.0.0.1:8766/``): a TLS echo server whose
  certificate comes from a private test CA, so no system trusts it;
* ``wss://localhost:8767/``: a TLS echo server that requires a client certificate;
* ``/path/to/ca.pem``: that CA's certificate; ``/path/to/client.pem``: a client
  certificate chain and key issued by it;
* ``http_proxy_port=3128``: an HTTP CONNECT proxy on 127.0.0.1 that requires the
  credentials ``user``/``secret``; ``http_proxy_port=1080``: a SOCKS proxy.

Only fenced blocks opened with exactly `````python`` are run; a block that cannot run
(shell commands, say) uses another language tag.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from conftest import WSServerFactory
from helpers import ROOT, run_python
from proxies import HttpConnectProxy, SocksProxy
from wsserver import Request, Response, accept

PAGES = (
    "faq.md",
    "quickstart.md",
    "howto/tls.md",
    "howto/proxies.md",
    "howto/compression.md",
    "howto/subprotocols.md",
    "howto/executors.md",
    "howto/embedding.md",
    "howto/processes.md",
    "feeds.md",
    "../README.md",
)
#: The fewest runnable snippets a page keeps (1 when not listed): a page whose
#: snippets were turned into unchecked blocks fails here.
MIN_SNIPPETS = {"faq.md": 4, "quickstart.md": 4, "howto/tls.md": 5, "howto/proxies.md": 4}

PLAIN = "ws://127.0.0.1:8765/"
SECURE = "wss://localhost:8766/"
SECURE_BY_IP = "wss://127.0.0.1:8766/"
MUTUAL_TLS = "wss://localhost:8767/"
SERVER_PLACEHOLDERS = (PLAIN, SECURE, SECURE_BY_IP, MUTUAL_TLS)
CA_FILE = "/path/to/ca.pem"
CLIENT_CERT = "/path/to/client.pem"
HTTP_PROXY = "http_proxy_port=3128"
SOCKS_PROXY = "http_proxy_port=1080"
PROXY_AUTH = ("user", "secret")


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
        elif line.rstrip() == "```python":
            code, inside = [], True
    return found


SNIPPETS = [snippet for page in PAGES for snippet in _snippets(page)]


@pytest.mark.parametrize("page", PAGES)
def test_the_page_has_snippets(page: str) -> None:
    mine = _snippets(page)
    assert len(mine) >= MIN_SNIPPETS.get(page, 1)
    for section, code in mine:
        # A snippet talks to one of the test servers, or starts the demo feed itself.
        names_a_server = any(url in code for url in SERVER_PLACEHOLDERS) or "DemoFeed(" in code
        assert names_a_server, f"{section} names no server"


def _pick_first_subprotocol(request: Request) -> Response | None:
    """Accept with the first subprotocol offered (None: the server's default answer)."""
    offered = request.subprotocols
    return accept(request, subprotocol=offered[0]) if offered else None


def _mutual_tls_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(ctx)
    return ctx


@contextlib.contextmanager
def _proxies(code: str) -> Iterator[tuple[HttpConnectProxy | None, SocksProxy | None]]:
    """The proxies ``code`` names, started (stopped again on exit)."""
    hosts = {"localhost": "127.0.0.1"}
    http = HttpConnectProxy(auth=PROXY_AUTH, hosts=hosts) if HTTP_PROXY in code else None
    socks = SocksProxy(hosts=hosts) if SOCKS_PROXY in code else None
    started = [proxy.start() for proxy in (http, socks) if proxy is not None]
    try:
        yield http, socks
    finally:
        for proxy in started:
            proxy.stop()


@pytest.mark.parametrize(("section", "code"), SNIPPETS, ids=[s for s, _ in SNIPPETS])
def test_snippet_runs(
    ws_server: WSServerFactory,
    tls_ca: trustme.CA,
    tls_server_ctx: ssl.SSLContext,
    tmp_path: Path,
    section: str,
    code: str,
) -> None:
    plain = ws_server(handshake=_pick_first_subprotocol)
    secure = ws_server(ssl_context=tls_server_ctx)
    code = code.replace(PLAIN, plain.url + "/").replace(SECURE, secure.url + "/")
    code = code.replace(SECURE_BY_IP, f"wss://127.0.0.1:{secure.port}/")
    if MUTUAL_TLS in code:
        mutual = ws_server(ssl_context=_mutual_tls_context(tls_ca))
        code = code.replace(MUTUAL_TLS, mutual.url + "/")
    if CA_FILE in code:
        tls_ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        code = code.replace(CA_FILE, str(tmp_path / "ca.pem"))
    if CLIENT_CERT in code:
        client = tls_ca.issue_cert("client@example.org")
        client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
        code = code.replace(CLIENT_CERT, str(tmp_path / "client.pem"))
    with _proxies(code) as (http, socks):
        if http is not None:
            code = code.replace(HTTP_PROXY, f"http_proxy_port={http.port}")
        if socks is not None:
            code = code.replace(SOCKS_PROXY, f"http_proxy_port={socks.port}")
        result = run_python(code, timeout=30, pythonpath=(ROOT,))
        for proxy in (http, socks):
            if proxy is not None:
                # The snippet went through the proxy, unless it shows no_proxy.
                assert bool(proxy.requests) != ("http_no_proxy" in code), section
                assert not proxy.errors, f"{section}: {proxy.errors!r}"
    assert result.returncode == 0, f"{section}:\n{result.stdout}\n{result.stderr}"
    assert (result.stdout + result.stderr).strip(), "each snippet shows something"
    assert "Bearer secret" not in result.stdout + result.stderr  # the trace redacts it
