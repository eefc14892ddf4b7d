"""``python -m wspool``: the ``wspool`` command line (:mod:`wspool.cli`)."""

import sys

from wspool.cli import main

if __name__ == "__main__":
    sys.exit(main())
