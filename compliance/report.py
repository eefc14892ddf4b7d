"""Read the fuzzingserver's JSON reports and turn them into counts, a verdict and Markdown.

Input is ``reports/clients/index.json`` (one entry per case: ``behavior``,
``behaviorClose``, ``duration`` in ms, ``reportfile``) plus the per-case JSON files,
which hold the description, what was expected and what was observed.

The target: every case's ``behavior`` and ``behaviorClose`` is OK or INFORMATIONAL.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BEHAVIORS",
    "PASSING",
    "TIMED_CASES",
    "TITLE",
    "CaseResult",
    "Summary",
    "doc_verdict",
    "load_results",
    "render_markdown",
    "summarize",
]

# The order the Autobahn report uses; anything else the server reports is appended.
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED")
CLOSE_BEHAVIORS = ("OK", "INFORMATIONAL", "WRONG CODE", "UNCLEAN", "FAILED", "UNIMPLEMENTED")
PASSING = frozenset({"OK", "INFORMATIONAL"})
# Wall times worth tracking: the largest single message (16 MiB text) and the
# 1 MiB message cut into 64-byte frames (9.3.1): both stress the receive path.
TIMED_CASES = ("9.1.6", "9.3.1")
_TRUNCATE = 400
TITLE = "Autobahn testsuite compliance"


def plain(text: str) -> str:
    """The testsuite's descriptions carry HTML (<b>, <br>): make them one plain line."""
    text = re.sub(r"<br\s*/?>", " ", text, flags=re.IGNORECASE)
    text = re.sub(r"</?[a-zA-Z][^>]*>", "", text)
    return " ".join(text.split())


def case_key(case_id: str) -> tuple[int, ...]:
    """Sort key: "9.10.2" after "9.2.1", as numbers, not strings."""
    return tuple(int(part) for part in case_id.split("."))


@dataclass(frozen=True)
class CaseResult:
    """One case's verdict from index.json, with its details for cases that miss the target."""

    id: str
    behavior: str
    behavior_close: str
    duration_ms: int
    remote_close_code: int | None
    reportfile: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def section(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def passes(self) -> bool:
        return self.behavior in PASSING and self.behavior_close in PASSING

    @property
    def description(self) -> str:
        return plain(str(self.detail.get("description", "")))


def load_results(outdir: Path, agent: str) -> list[CaseResult]:
    """Return ``agent``'s results, sorted by case id; details are loaded for failing cases."""
    index_path = outdir / "index.json"
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{index_path} is missing: the fuzzingserver wrote no report (did updateReports run?)"
        ) from None
    cases: Mapping[str, Mapping[str, Any]] = index.get(agent, {})
    results = []
    for case_id in sorted(cases, key=case_key):
        entry = cases[case_id]
        result = CaseResult(
            id=case_id,
            behavior=str(entry["behavior"]),
            behavior_close=str(entry["behaviorClose"]),
            duration_ms=int(entry.get("duration") or 0),
            remote_close_code=entry.get("remoteCloseCode"),
            reportfile=str(entry.get("reportfile", "")),
        )
        if not result.passes and result.reportfile:
            detail = json.loads((outdir / result.reportfile).read_text())
            result = CaseResult(**{**result.__dict__, "detail": detail})
        results.append(result)
    return results


@dataclass(frozen=True)
class Summary:
    total: int
    behaviors: Counter[str]
    close_behaviors: Counter[str]
    sections: dict[str, Counter[str]]
    failing: list[CaseResult]
    durations_ms: dict[str, int]

    @property
    def passed(self) -> bool:
        return self.total > 0 and not self.failing

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "passed": self.passed,
            "behaviors": dict(self.behaviors),
            "behaviorClose": dict(self.close_behaviors),
            "sections": {name: dict(counts) for name, counts in self.sections.items()},
            "durations_ms": self.durations_ms,
            "failing": [
                {
                    "id": case.id,
                    "behavior": case.behavior,
                    "behaviorClose": case.behavior_close,
                    "description": case.description,
                    "expectation": case.detail.get("expectation"),
                    "result": case.detail.get("result"),
                    "resultClose": case.detail.get("resultClose"),
                    "expected": case.detail.get("expected"),
                    "expectedClose": case.detail.get("expectedClose"),
                    "received": case.detail.get("received"),
                    "remoteCloseCode": case.remote_close_code,
                    "localCloseCode": case.detail.get("localCloseCode"),
                    "wasClean": case.detail.get("wasClean"),
                    "wasNotCleanReason": case.detail.get("wasNotCleanReason"),
                }
                for case in self.failing
            ],
        }


def summarize(results: Iterable[CaseResult]) -> Summary:
    results = list(results)
    sections: dict[str, Counter[str]] = {}
    for case in sorted(results, key=lambda c: case_key(c.id)):
        sections.setdefault(case.section, Counter())[case.behavior] += 1
    return Summary(
        total=len(results),
        behaviors=Counter(case.behavior for case in results),
        close_behaviors=Counter(case.behavior_close for case in results),
        sections=sections,
        failing=[case for case in results if not case.passes],
        durations_ms={case.id: case.duration_ms for case in results if case.id in TIMED_CASES},
    )


def _ordered(counts: Counter[str], known: Iterable[str]) -> list[str]:
    names = list(known)
    return names + sorted(name for name in counts if name not in names)


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=True)
    return text if len(text) <= _TRUNCATE else text[:_TRUNCATE] + f"... ({len(text)} chars)"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


_TARGET_LINE = re.compile(r"^- \*\*Target\*\* \([^)]*\): (?P<verdict>.+)$", re.M)
_FIELD_LINE = r"^- \*\*{}\*\*: (?P<value>.+)$"


def doc_verdict(path: Path) -> str | None:
    """What a report document written by :func:`render_markdown` says of its run:
    "met (2026-12-02 02:20 UTC, 517 cases)", or None without such a document."""
    try:
        text = path.read_text()
    except OSError:
        return None
    target = _TARGET_LINE.search(text)
    if target is None:
        return None
    facts = []
    date = re.search(_FIELD_LINE.format("Date"), text, re.M)
    if date:
        facts.append(date["value"])
    wall = re.search(_FIELD_LINE.format("Wall time"), text, re.M)
    count = re.search(r"for (\d+) cases", wall["value"]) if wall else None
    if count:
        facts.append(f"{count[1]} cases")
    return target["verdict"] + (f" ({', '.join(facts)})" if facts else "")


def render_markdown(
    summary: Summary,
    metadata: Mapping[str, str],
    client_notes: Mapping[str, str],
    *,
    title: str = TITLE,
    other_runs: Mapping[str, str] | None = None,
) -> str:
    """The docs/compliance.md page: run facts, counts, and every case that misses the target.

    ``client_notes`` maps case ids to how the client saw the case end (its exception, ...).
    ``other_runs`` maps a label (another front end) to a Markdown line about its own run
    (a link and its verdict), so each front end's document shows both results.
    """
    out: list[str] = [f"# {title}", ""]
    out.append(
        "Generated by `compliance/run.py` (see `compliance/README.md`); do not edit by hand."
    )
    out.append("")
    out += [f"- **{key}**: {value}" for key, value in metadata.items()]
    verdict = "met" if summary.passed else f"**not met** ({len(summary.failing)} cases)"
    out.append(f"- **Target** (every case OK or INFORMATIONAL, close behavior too): {verdict}")
    out += [f"- **{label}**: {line}" for label, line in (other_runs or {}).items()]
    out += [
        "",
        "## Results",
        "",
        "| Result | Cases |",
        "| --- | ---: |",
    ]
    out += [f"| {b} | {summary.behaviors[b]} |" for b in _ordered(summary.behaviors, BEHAVIORS)]
    out.append(f"| **Total** | {summary.total} |")
    out += ["", "### Close behavior", "", "| behaviorClose | Cases |", "| --- | ---: |"]
    for name in _ordered(summary.close_behaviors, CLOSE_BEHAVIORS):
        out.append(f"| {name} | {summary.close_behaviors[name]} |")

    columns = _ordered(summary.behaviors, BEHAVIORS)
    out += ["", "### Per section", ""]
    out.append("| Section | " + " | ".join(columns) + " |")
    out.append("| --- |" + " ---: |" * len(columns))
    for section, counts in summary.sections.items():
        out.append(f"| {section}.x | " + " | ".join(str(counts[c]) for c in columns) + " |")

    out += ["", "### Wall time of the large-message cases", ""]
    out += ["| Case | Duration (ms) |", "| --- | ---: |"]
    for case_id in TIMED_CASES:
        duration = summary.durations_ms.get(case_id)
        out.append(f"| {case_id} | {'not run' if duration is None else duration} |")

    out += ["", "## Cases that miss the target", ""]
    if not summary.failing:
        out.append("None.")
    for case in summary.failing:
        detail = case.detail
        out.append(f"### {case.id}: {case.behavior} / close {case.behavior_close}")
        out.append("")
        out.append(f"- Description: {_md_cell(case.description)}")
        out.append(f"- Expectation: {_md_cell(plain(str(detail.get('expectation', ''))))}")
        out.append(f"- Result: {_md_cell(str(detail.get('result', '')))}")
        out.append(f"- Close: {_md_cell(str(detail.get('resultClose', '')))}")
        out.append(f"- Expected: `{_short(detail.get('expected'))}`")
        out.append(f"- Received: `{_short(detail.get('received'))}`")
        # The report speaks from the server's side: "remote" is the client under test.
        out.append(
            f"- Close code sent by the client: {case.remote_close_code}, by the server: "
            f"{detail.get('localCloseCode')}; expected close: "
            f"`{_short(detail.get('expectedClose'))}`; clean: {detail.get('wasClean')}"
        )
        note = client_notes.get(case.id)
        if note:
            out.append(f"- Client saw: {_md_cell(note)}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
