"""A griffe extension for the API pages: Sphinx roles in docstrings become code spans.

wspool's docstrings name other objects the reST way (``:class:`~wspool.Pool```,
``:func:`connect```), which Markdown would print with the role still in front.
This turns each role into plain inline code (``~`` keeps the last dotted part, as in
Sphinx); it changes nothing but how the docstrings are shown on the site.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|data|attr|mod|exc|obj|const):`([^`]+)`")


def _code(match: re.Match[str]) -> str:
    target = match.group(1)
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


def strip_roles(text: str) -> str:
    """``text`` with every Sphinx cross-reference role turned into inline code."""
    return _ROLE.sub(_code, text)


class SphinxRolesToCode(griffe.Extension):
    """Rewrite the docstring of every object griffe loads (see :func:`strip_roles`)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = strip_roles(obj.docstring.value)
