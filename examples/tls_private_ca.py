"""wss:// with a private certificate authority: trust exactly your CA, nothing else.

Internal feeds often use certificates from a company CA that no system trusts.  The
answer is not ``cert_reqs=ssl.CERT_NONE`` (that trusts everyone) but telling wspool
which CA to trust: ``sslopt={"ca_certs": "ca.pem"}``, the same option as in
websocket-client, for ``wspool.connect`` and ``Pool.connect`` alike (or
``sslopt={"context": ctx}`` with an ``ssl.SSLContext`` you built).

The demo makes a throwaway CA and a certificate for ``localhost`` with the
``trustme`` package (a test dependency of wspool: ``pip install trustme``), starts the
embedded demo feed (``wspool.demofeed``) with it on 127.0.0.1, then:

1. connects with the CA (blocking client, then a Pool): works, host name checked;
2. connects without it: fails with a certificate error, printed as one line.

    python examples/tls_private_ca.py
    python examples/tls_private_ca.py --url wss://feed.internal:8443/ws --ca company-ca.pem
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from pathlib import Path

import wspool
from wspool.demofeed import DemoFeed


def connect_with_ca(url: str, ca_file: str) -> bool:
    """One blocking connection that trusts ``ca_file``: whether it opened."""
    with wspool.connect(url, sslopt={"ca_certs": ca_file}, timeout=10) as ws:
        print(f"with the CA: connected to {url} (status {ws.status})")
    return ws.close_status == 1000


def connect_without_ca(url: str) -> bool:
    """The same URL against the system trust store: whether it was refused."""
    try:
        wspool.connect(url, timeout=10).close()
    except wspool.WebSocketTLSException as exc:
        print(f"without the CA: refused: {str(exc).splitlines()[0]}")
        return True
    print("without the CA: connected?! (does the system trust this CA?)")
    return False


def pool_ticks(url: str, ca_file: str, count: int) -> int:
    """``count`` ticks over wss:// through a Pool with the same sslopt."""
    got: list[dict[str, object]] = []
    done = threading.Event()

    def on_open(conn: wspool.Connection) -> None:
        conn.send_json({"op": "subscribe", "channel": "ticker", "symbols": ["ETH-USD"]})

    def on_message(conn: wspool.Connection, message: str | bytes) -> None:
        data = json.loads(message)
        if data["type"] == "ticker" and len(got) < count:
            got.append(data)
            if len(got) == count:
                done.set()

    with wspool.Pool(workers=2) as pool:
        pool.connect(url, sslopt={"ca_certs": ca_file}, on_open=on_open, on_message=on_message)
        done.wait(10)
    for tick in got:
        print(f"pool over wss: {tick['symbol']} #{tick['seq']} {tick['price']}")
    return len(got)


def demo() -> int:
    try:
        import trustme
    except ImportError:
        print("this demo needs trustme to make its CA: python -m pip install trustme")
        return 2
    import ssl

    ca = trustme.CA(organization_name="wspool demo CA")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    with tempfile.TemporaryDirectory() as tmp, DemoFeed(ssl_context=server_context) as feed:
        ca_file = str(Path(tmp) / "demo-ca.pem")
        ca.cert_pem.write_to_path(ca_file)  # what your company hands out
        print(f"demo feed at {feed.url}, certificate issued by a private CA ({ca_file})")
        ok = connect_with_ca(feed.url + "/echo", ca_file)
        ok &= pool_ticks(feed.url + "/ticker", ca_file, 3) == 3
        ok &= connect_without_ca(feed.url + "/echo")
    print("demo: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a wss:// URL whose certificate your CA issued")
    parser.add_argument("--ca", help="the CA certificate (PEM) to trust for --url")
    parser.add_argument("--demo", action="store_true", help="the local demo (the default)")
    args = parser.parse_args(argv)
    if args.url and not args.demo:
        if not args.ca:
            parser.error("--url needs --ca")
        ok = connect_with_ca(args.url, args.ca)
        return 0 if ok else 1
    return demo()


if __name__ == "__main__":
    sys.exit(main())
