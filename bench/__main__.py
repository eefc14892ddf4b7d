"""``python -m bench``: run the suite, print the table, write the JSON record."""

from bench.run import main

raise SystemExit(main())
