"""HTML and Markdown rendering: badges, and no live markup from hostile labels."""

from __future__ import annotations

from dataclasses import replace
from html.parser import HTMLParser

import pytest
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from cjlib.report import tables
from cjlib.report.assembly import assemble_report
from cjlib.report.checklist import CHECKS, evaluate_checklist
from cjlib.report.html import (
    FAIL_BADGE,
    PASS_BADGE,
    checklist_html,
    header_markdown,
    html_table,
    limitations_markdown,
    markdown_text,
)
from cjlib.report.limitations import limitations
from tests.unit.report.batches import batch_frames, renamed

SCRIPT = "<script>alert(9)</script>"
IMAGE = '<img src=x onerror="alert(1)">'
LINK = "[click](javascript:alert(2))"
#: The markup the report itself writes (tables, badges) and Markdown renders to.
OWN_TAGS = {"table", "thead", "tbody", "tr", "th", "td", "span", "h2", "a", "ul", "li", "p"}


class _Markup(HTMLParser):
    """Collects the tags, attributes and text of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(fragment: str) -> _Markup:
    parser = _Markup()
    parser.feed(fragment)
    parser.close()
    return parser


def _assert_no_live_markup(fragment: str) -> str:
    parsed = _parse(fragment)
    tags = {tag for tag, _ in parsed.tags}
    assert tags <= OWN_TAGS, f"markup from the data: {tags - OWN_TAGS}"
    for tag, attrs in parsed.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not str(attrs.get("href", "")).startswith("javascript:"), (tag, attrs)
    return "".join(parsed.text)


def test_checklist_html_marks_passing_and_failing_lines():
    checklist = evaluate_checklist(batch_frames(flip="anc_1"), health="ok", alerts=[])
    html = checklist_html(checklist)
    assert html.count(f'<tr class="pass"><td>{PASS_BADGE}</td>') == len(CHECKS) - 1
    assert html.count(f'<tr class="fail"><td>{FAIL_BADGE}</td>') == 1


@pytest.fixture
def hostile_report():
    """A batch whose label, course, judge, error codes, essay ids and anchor label are markup."""
    frames = renamed(batch_frames(failed=2, flip="anc_2"), {"anc_2": SCRIPT, "S0": IMAGE})
    upload = replace(frames.upload, batch_label=SCRIPT, course_id=IMAGE, assignment_id=LINK)
    frames = replace(frames, upload=upload)
    comparisons = frames.comparisons.copy()
    comparisons["judge_id"] = LINK
    comparisons.loc[comparisons["winner"] == "error", "error_code"] = SCRIPT
    frames = replace(frames, comparisons=comparisons)
    frames.essays.loc[frames.essays["els_essay_id"] == IMAGE, ["bt_score", "bt_se"]] = float("nan")
    return assemble_report(frames)


def test_hostile_labels_render_as_text_in_html_tables(hostile_report):
    rep = hostile_report
    checklist = evaluate_checklist(rep.frames, health="ok", alerts=[])
    rendered = [
        checklist_html(checklist),
        html_table(tables.run_summary(rep)),
        html_table(tables.judge_fit_table(rep)),
        html_table(tables.anchor_check_table(rep)),
        html_table(tables.inversions_table(rep)),
        html_table(rep.frames.projections),
    ]
    text = "".join(_assert_no_live_markup(fragment) for fragment in rendered)
    # Shown, as text: the ids, labels and codes were escaped, not dropped.
    assert SCRIPT in text and IMAGE in text and LINK in text
    assert f"{SCRIPT} (column false, metadata true)" in text


def test_hostile_labels_render_as_text_in_markdown(hostile_report):
    rep = hostile_report
    items = limitations(rep)
    assert any(SCRIPT in item for item in items)  # the plain sentences keep the raw text
    header = markdown2html_mistune(header_markdown(rep))
    caveats = markdown2html_mistune(limitations_markdown(items))
    header_text = _assert_no_live_markup(header)
    caveats_text = _assert_no_live_markup(caveats)
    assert f"Batch {SCRIPT} (cj_batch_id 7)" in header_text
    assert IMAGE in header_text and LINK in header_text
    assert f"no score: {IMAGE}." in caveats_text
    assert f"{SCRIPT} × 2" in caveats_text


def test_markdown_text_keeps_plain_text_unchanged_when_rendered():
    plain = "eng5_anchor_03 (column false) *not* #1 | 2 & 3"
    rendered = _assert_no_live_markup(markdown2html_mistune(markdown_text(plain)))
    assert rendered.strip() == plain
