"""One module per client library; each runs the scenarios in its own process.

``python -m bench.drivers LIBRARY SCENARIO PARAMS_JSON`` prints one line
``RESULT <json>``.  The scenarios and the fields each returns are documented in
:mod:`bench.drivers._common`.
"""
