# ruff: noqa: UP010, UP031
# mypy: ignore-errors
"""Start the Autobahn fuzzingserver on 127.0.0.1 (run with Python 2.7, not Python 3).

The autobahntestsuite package only runs on Python 2.7, so ``run.py`` installs it into a
folder with ``pip install --target`` and starts this script with the 2.7 interpreter::

    python2.7 fuzzingserver27.py SITE_DIR SPEC_JSON PORT_FILE

``wstest -m fuzzingserver`` would listen on every interface; this launcher builds the
same server factory but binds 127.0.0.1 only, on a port the kernel picks, and then
writes that port number to PORT_FILE so the parent knows where to connect.

This file must stay valid Python 2.7 (no annotations, no f-strings).
"""

from __future__ import print_function

import json
import os
import site
import sys


def main(argv):
    if len(argv) != 4:
        print("usage: fuzzingserver27.py SITE_DIR SPEC_JSON PORT_FILE", file=sys.stderr)
        return 2
    site_dir, spec_path, port_file = argv[1], argv[2], argv[3]

    # addsitedir (not sys.path.insert) so that the zope namespace .pth is processed.
    site.addsitedir(site_dir)

    # wstest imports choosereactor first so the reactor is installed before anything
    # imports twisted.internet.reactor; keep that order.
    from autobahntestsuite import (
        choosereactor,  # noqa: F401
        fuzzing,
    )
    from twisted.internet import reactor

    with open(spec_path) as f:
        spec = json.load(f)

    factory = fuzzing.FuzzingServerFactory(spec)
    # The spec URL carries port 0: listen on an ephemeral port of the loopback only.
    listener = reactor.listenTCP(0, factory, 50, "127.0.0.1")
    port = listener.getHost().port

    # Re-announce the real URL so the Host header check and the handshake reply use it.
    factory.setSessionParameters(
        url="ws://127.0.0.1:%d" % port,
        protocols=spec.get("protocols", []),
        server=factory.server,
    )

    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, port_file)  # atomic: the parent never reads a half-written file
    print("fuzzingserver listening on ws://127.0.0.1:%d" % port)
    sys.stdout.flush()

    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
