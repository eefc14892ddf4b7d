"""``python -m bench.drivers LIBRARY SCENARIO PARAMS_JSON`` (run by bench.run)."""

from bench.drivers._common import main

raise SystemExit(main())
