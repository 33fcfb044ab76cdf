"""Rendering the report as HTML and Markdown, with every text from the data escaped.

Labels, ids, course ids, error codes and limitation texts come from the database and the data
set, so they may hold ``<``, ``&`` or Markdown syntax; they are escaped with
:func:`html.escape` (and Markdown punctuation with a backslash) before they reach a notebook
output, so nothing from the data becomes live markup in ``validation_report.html``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from cjlib.notebook import format_value, html_table
from cjlib.report.assembly import BatchReport
from cjlib.report.tables import run_summary

__all__ = [
    "DECISIONS_OVER_TIME_MARKDOWN",
    "JUDGE_PANEL_MARKDOWN",
    "PANEL_MARKDOWN",
    "SPLIT_HALF_MARKDOWN",
    "checklist_html",
    "header_markdown",
    "html_table",
    "limitations_markdown",
    "markdown_text",
]

PASS_BADGE = '<span style="color:#1a7f37;font-weight:bold">✓ PASS</span>'
FAIL_BADGE = '<span style="color:#c0392b;font-weight:bold">✗ FAIL</span>'

# CommonMark lets a backslash escape any ASCII punctuation; these are the characters that can
# start emphasis, links, images, code, headings, tables or raw HTML.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>])")


def markdown_text(value: Any) -> str:
    """``value`` as Markdown that renders as exactly its text: no markup, no links, one line.

    HTML-escapes ``&``, ``<``, ``>`` and quotes, backslash-escapes Markdown punctuation and
    joins lines.
    """
    text = html.escape(format_value(value), quote=True)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))


def checklist_html(checklist: pd.DataFrame) -> str:
    """The checklist as an HTML table (id ``success-checklist``), a PASS / FAIL badge per line.

    Plain text with a colour, not emoji: a report must read the same on machines without an
    emoji font. Check names and evidence are HTML-escaped.
    """
    rows = "".join(
        f'<tr class="{"pass" if row.passed else "fail"}">'
        f"<td>{PASS_BADGE if row.passed else FAIL_BADGE}</td>"
        f"<td>{html.escape(str(row.check))}</td><td>{html.escape(str(row.evidence))}</td></tr>"
        for row in checklist.itertuples(index=False)
    )
    return (
        '<table id="success-checklist" class="cj-table">'
        "<thead><tr><th></th><th>check</th><th>evidence</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def header_markdown(rep: BatchReport) -> str:
    """A Markdown heading and table of :func:`cjlib.report.tables.run_summary` for the top."""
    upload = rep.frames.upload
    lines = [
        f"## Batch {markdown_text(upload.batch_label)} (cj_batch_id {markdown_text(upload.id)})",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [
        f"| {markdown_text(r.field)} | {markdown_text(r.value)} |"
        for r in run_summary(rep).itertuples(index=False)
    ]
    return "\n".join(lines)


def limitations_markdown(items: Sequence[str]) -> str:
    """The limitations as a Markdown bullet list (a sentence saying so when there are none)."""
    if not items:
        return "No limitations were detected in the data of this batch."
    return "\n".join(f"- {markdown_text(item)}" for item in items)


#: Section texts of the human-panel cells of notebook 04 (shown for imported batches).
PANEL_MARKDOWN = """## Human judging panel

This batch was imported from a human decision export. The table says how the file was read: rows
kept and skipped, and whether it said where each essay was shown (without positions, no
position bias can be measured). Essay texts and true grades are not needed for anything below."""
JUDGE_PANEL_MARKDOWN = """### Judges

Per judge: decisions, infit and outfit mean squares of the refit (near 1: the judge agrees with
the consensus as much as the model expects; above it: more surprising decisions), **misfit** when
the infit exceeds the panel's mean + 2 SD (Pollitt 2012), the median seconds per decision (when
the file gave times) and the share of decisions for the essay shown left / as A (when positions
are known; far from one half means a side preference)."""
DECISIONS_OVER_TIME_MARKDOWN = """### Decisions over time

Decisions per time bin (bars) and the running total (line), from the decision times of the
file: the pace of the judging session, and gaps or late bursts."""
SPLIT_HALF_MARKDOWN = """### Split-half reliability

The judges are split at random into two halves, the scores are fitted on each half and
correlated; the Spearman–Brown step-up estimates the reliability of the whole panel. Unlike SSR
it does not rely on the model's own standard errors, so it is the inter-rater reliability CJ
studies report next to SSR."""
