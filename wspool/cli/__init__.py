"""The ``wspool`` command line (the ``wspool`` console script and ``python -m wspool``).

Modes (docs/cli.md documents them all):

* ``wspool URL [URL ...]`` (or ``-f FILE``): print every message as one line,
  ``LABEL MESSAGE`` (labels ``c1``, ``c2``, ... in URL order), or JSON lines with
  ``--jsonl``; a live status line on stderr when stderr is a terminal
  (:mod:`wspool.cli._stream`);
* ``wspool -i URL``: interactive, type lines to send them (:mod:`wspool.cli._interactive`);
* ``wspool top URL ...``: a refreshing table per connection (:mod:`wspool.cli._top`);
* ``wspool demo``: hundreds of connections to the embedded demo feed
  (:mod:`wspool.cli._demo`);
* ``wspool forward URL ... --to ENGINE``: every message into a Redis stream or NATS
  JetStream, static (``--shard I/N``) or leased (``--lease``) shards
  (:mod:`wspool.cli._forward`).

The connection options map one to one onto :meth:`wspool.Pool.connect` options, so
every check (and its message) is the library's own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wspool.cli._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    add_connection_arguments,
    add_url_arguments,
    collect_urls,
)
from wspool.cli._top import SORTS

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_demo_parser",
    "build_forward_parser",
    "build_parser",
    "build_top_parser",
    "main",
]

_EPILOG = """\
other modes:
  wspool top URL ...   a refreshing table, one row per connection (wspool top --help)
  wspool demo          hundreds of connections to a local demo feed (wspool demo --help)
  wspool forward URL ... --to redis://HOST/STREAM | nats://HOST/SUBJECT
                       every message into an engine (wspool forward --help)

output:
  one line per message: "LABEL MESSAGE". Labels are c1, c2, ... in the order the
  URLs were given (also for a single URL). Text is printed as is, except that
  backslash, CR and LF are written as \\\\, \\r and \\n so one message is one line;
  binary messages are printed in hex (or base64 with --binary base64).
  --jsonl prints one JSON object per line instead: messages as
  {"conn", "url", "type": "text"|"binary", "data"} (binary data per --binary;
  with --json a text message that is JSON also gets "json", the parsed value) and
  events as {"conn", "url", "type": "open"|"close"|"error"|"reconnect", ...}.
  Errors go to stderr as "wspool: LABEL URL: message".
  When stderr is a terminal, its last line is a live status (connections up/total,
  msg/s, messages, reconnects, errors), redrawn 4 times a second; --no-status
  turns it off.

interactive (-i, one URL): type a line to send it as text; "> " lines are what was
  sent, "< " lines what arrived, "* " lines events. Commands: /ping [PAYLOAD],
  /binary HEX, /close [CODE [REASON]], /quit, /help; //TEXT sends /TEXT. End of
  input (Ctrl-D) closes with a closing handshake (1000) and exits.

exit status:
  0    every connection ended cleanly, or --count messages arrived
  1    some connection failed (an error was reported)
  2    usage error (bad option or option value, malformed URL or header)
  130  interrupted (Ctrl-C): every connection is closed with a closing handshake
       and a summary is printed on stderr

examples:
  wspool wss://echo.example/ws --send hello --count 1
  wspool -f urls.txt --jsonl --reconnect
  wspool -i wss://echo.example/ws
"""

_TOP_EPILOG = """\
keys (when stdout and stdin are a terminal):
  s  next sort column (S: previous)   r  reverse the order   q  quit

columns: LABEL, STATE (connecting/open/closing/reconnecting/closed), MSG/S and
  BYTES/S received over the last interval, RTT of the last keepalive ping (needs
  --ping-interval), AGE of the last message, RECON reconnects, QUEUE callbacks
  waiting, ERR errors, URL. The header line has the totals; rows that do not fit
  the terminal are left out (the footer says how many).

not a terminal: every --interval seconds a snapshot:
  time=S connections=N open=N msg_s=R bytes_s=R messages=N reconnects=N errors=N
  label state msg_s bytes_s rtt_ms age_s reconnects queue errors url
  c1 open 20.0 1480 - 0.0 0 0 0 ws://...
  (a blank line ends it; "-" means not known yet), or with --jsonl one JSON object
  per connection per interval. It ends once every connection ended for good.

exit status: 0 (q; or -n refreshes done, or every connection ended, without an error),
  1 (-n refreshes done, or every connection ended, and some connection failed),
  2 usage error, 130 Ctrl-C (closing handshakes, summary on stderr).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``wspool URL ...`` command (plain and interactive)."""
    parser = argparse.ArgumentParser(
        prog="wspool",
        description="Connect to WebSocket URLs (one shared wspool.Pool) and print every "
        "message received.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_url_arguments(parser)
    parser.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="one URL: send typed lines, print what arrives (see below)",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--jsonl", action="store_true", help="print one JSON object per line")
    out.add_argument("--json", action="store_true", help="pretty-print text messages that are JSON")
    out.add_argument(
        "--binary",
        choices=("hex", "base64"),
        default="hex",
        help="how binary messages are printed (default: hex)",
    )
    out.add_argument(
        "--count", type=int, metavar="N", help="exit after N messages in total (all URLs)"
    )
    out.add_argument(
        "--status",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the live status line when stderr is a terminal (default: on)",
    )
    add_connection_arguments(parser)
    return parser


def _add_view_arguments(
    parser: argparse.ArgumentParser, interval: float, *, snapshots: bool
) -> None:
    view = parser.add_argument_group("view")
    view.add_argument(
        "--sort",
        choices=SORTS,
        default="msgs",
        help="order of the rows (default: msgs, i.e. msg/s; the s key cycles)",
    )
    view.add_argument(
        "--interval",
        type=float,
        default=interval,
        metavar="S",
        help=f"seconds between refreshes (default: {interval:g})",
    )
    if not snapshots:
        parser.set_defaults(iterations=None, jsonl=False)
        return
    view.add_argument("-n", "--iterations", type=int, metavar="N", help="exit after N refreshes")
    view.add_argument(
        "--jsonl",
        action="store_true",
        help="not a terminal: one JSON object per connection per interval",
    )


def build_top_parser() -> argparse.ArgumentParser:
    """The argument parser of ``wspool top``."""
    parser = argparse.ArgumentParser(
        prog="wspool top",
        description="A refreshing table of WebSocket connections (one shared wspool.Pool):\n"
        "state, msg/s, bytes/s, RTT, age of the last message, reconnects, queue depth.",
        epilog=_TOP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_url_arguments(parser)
    _add_view_arguments(parser, 1.0, snapshots=True)
    add_connection_arguments(parser)
    return parser


def build_demo_parser() -> argparse.ArgumentParser:
    """The argument parser of ``wspool demo``."""
    parser = argparse.ArgumentParser(
        prog="wspool demo",
        description="No network needed: start the embedded demo feed (wspool.demofeed) on\n"
        "loopback and fan in from many connections with the live view (the top table\n"
        "when stdout is a terminal, else the status line when stderr is one), then\n"
        "print a summary.",
        epilog="exit status: 0 (the time is up, or q), 130 (Ctrl-C; the summary is printed).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--connections", type=int, default=200, metavar="N", help="connections (default: 200)"
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, metavar="S", help="how long (default: 10)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=20.0,
        metavar="R",
        help="ticks per second per symbol; each connection takes one symbol (default: 20)",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        metavar="S",
        help="the feed closes each connection after S seconds (1001), so reconnects show",
    )
    _add_view_arguments(parser, 0.5, snapshots=False)
    parser.set_defaults(send=[], debug=False)
    return parser


_FORWARD_EPILOG = """\
--to:
  redis://[[user]:password@]host[:port]/STREAM_KEY[?db=N]   one XADD per message;
      the key may contain {label} (default wspool:{label}: one stream per feed)
  nats://[[user]:password@ | token@]host[:port]/SUBJECT       JetStream publish;
      the subject may contain {label} (default wspool.{label})

feeds file (-f feeds.toml):
  [defaults]                     any feed key below, for every feed
  ping_interval = 20
  [[feed]]
  url = "wss://..."              required
  label = "btc"                  default c1, c2, ... (command-line URLs first)
  subscribe = {op = "subscribe", args = ["trades"]}   str, table or array
  redundancy = 2                 or a list of other URLs (needs dedupe)
  max_age = 3600                 stale_after = 30     heartbeat = 20
  dedupe = "json:id"             "json:FIELD.PATH" or "text"; also the engine's
                                 dedupe id (JetStream Nats-Msg-Id)
  sequence = "json:seq"          gap tracking
  header = ["Name: value"]
  other keys: send_rate, subprotocols, origin, ping_timeout, reconnect, max_size,
  open_timeout (Pool.connect options)

shards: --shard I/N keeps the feeds whose label hashes (rendezvous) to slot I, so
  the same feeds file on N machines splits cleanly. --lease URL --shards N takes
  shards by leases in Redis or NATS instead (--standby: two holders per shard).

exit status: 0 (SIGTERM, or every feed ended), 1 (engine unreachable at start,
  a feed failed, or the sink could not be flushed), 2 usage error, 130 Ctrl-C.
  Both signals close every connection with a closing handshake, flush the sink
  and release the leases first.
"""


def build_forward_parser() -> argparse.ArgumentParser:
    """The argument parser of ``wspool forward``."""
    parser = argparse.ArgumentParser(
        prog="wspool forward",
        description="Connect every feed (one shared wspool.Pool) and forward every message "
        "into a Redis stream or NATS JetStream.",
        epilog=_FORWARD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("urls", nargs="*", metavar="URL", help="ws:// or wss:// feed URL")
    parser.add_argument("-f", "--file", metavar="FEEDS.TOML", help="the feeds (see below)")
    parser.add_argument(
        "--to", metavar="URL", help="redis://HOST[:PORT]/STREAM or nats://HOST[:PORT]/SUBJECT"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="say what happens on stderr")
    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--maxlen",
        type=int,
        default=100_000,
        metavar="N",
        help="redis: trim each stream to about N entries (0: never; default 100000)",
    )
    engine.add_argument("--stream", metavar="NAME", help="nats: the JetStream stream expected")
    engine.add_argument(
        "--create-stream", metavar="NAME", help="nats: create this stream (if missing)"
    )
    engine.add_argument(
        "--duplicate-window", type=float, metavar="S", help="nats: of the created stream"
    )
    engine.add_argument("--batch", type=int, metavar="N", help="records per write (default 500)")
    engine.add_argument(
        "--buffer", type=int, metavar="N", help="records held at most (default 10000)"
    )
    engine.add_argument(
        "--flush-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="at exit, wait at most S seconds for the engine (default 10)",
    )
    engine.add_argument(
        "--close-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="at exit, wait at most S seconds for closing handshakes (default 5)",
    )
    shards = parser.add_argument_group("shards")
    shards.add_argument("--shard", metavar="I/N", help="keep the feeds of static shard I of N")
    shards.add_argument(
        "--lease", metavar="URL", help="take shards by leases (redis:// or nats://)"
    )
    shards.add_argument("--shards", type=int, metavar="N", help="with --lease: shard count")
    shards.add_argument(
        "--lease-ttl", type=float, default=10.0, metavar="S", help="lease lifetime (default 10)"
    )
    shards.add_argument(
        "--lease-group",
        default="wspool-forward",
        metavar="NAME",
        help="lease group name (default wspool-forward)",
    )
    shards.add_argument(
        "--standby", action="store_true", help="two holders per shard (hot standby)"
    )
    parser.add_argument(
        "--stats-every", type=float, metavar="S", help="a JSON stats line on stderr every S s"
    )
    add_connection_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see ``wspool --help``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out, err = sys.stdout, sys.stderr
    if argv[:1] == ["top"]:
        from wspool.cli._top import run_top

        parser = build_top_parser()
        args = parser.parse_args(argv[1:])
        return run_top(args, collect_urls(parser, args), out, err)
    if argv[:1] == ["demo"]:
        from wspool.cli._demo import run_demo

        parser = build_demo_parser()
        args = parser.parse_args(argv[1:])
        if args.connections < 1:
            parser.error(f"--connections must be >= 1, not {args.connections}")
        if args.seconds <= 0 or args.interval <= 0:
            parser.error("--seconds and --interval must be > 0")
        return run_demo(args, out, err)
    if argv[:1] == ["forward"]:
        from wspool.cli._forward import run_forward

        parser = build_forward_parser()
        args = parser.parse_args(argv[1:])
        return run_forward(args, out, err)
    parser = build_parser()
    args = parser.parse_args(argv)
    urls = collect_urls(parser, args)
    if args.count is not None and args.count < 1:
        parser.error(f"--count must be >= 1, not {args.count}")
    if args.interactive:
        if len(urls) != 1:
            parser.error(f"-i takes exactly one URL, not {len(urls)}")
        if args.jsonl or args.count is not None:
            parser.error("-i does not go with --jsonl or --count")
        from wspool.cli._interactive import run_interactive

        return run_interactive(args, urls[0], out, err)
    from wspool.cli._stream import run_stream

    return run_stream(args, urls, out, err)
