"""Reading decision exports: every recognised layout, the mapping option, and each bad input."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from cjlib.errors import JudgementFileError
from cjlib.importing import (
    normalise_column_name,
    read_anchor_grades,
    read_judgement_file,
    read_judgements,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "judgements"


def _fixture_script():
    spec = importlib.util.spec_from_file_location(
        "make_judgement_fixtures", ROOT / "scripts" / "make_judgement_fixtures.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def expected() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "expected.csv", dtype=str)


# Fixture → (layout, has positions, has judge).
GOOD = {
    "nmm_export.csv": ("nmm", True, True),
    "judge_candidate_chosen.csv": ("candidate", False, True),
    "judge_candidate_chosen_spaces.csv": ("candidate", True, True),
    "r_style_dotted.csv": ("candidate", False, True),
    "won_lost.csv": ("won_lost", False, False),
    "winner_loser.tsv": ("winner_loser", False, True),
    "left_right_choice.csv": ("left_right", True, True),
    "ab_choice_semicolon.csv": ("left_right", True, False),
    "llm_id1_id2.csv": ("id1_id2", True, False),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_every_layout_gives_the_same_decisions(name, expected):
    layout, positions, judge = GOOD[name]
    result = read_judgement_file(FIXTURES / name)
    got = result.decisions
    assert result.layout == layout
    assert got["winner_id"].tolist() == expected["winner_id"].tolist()
    assert got["loser_id"].tolist() == expected["loser_id"].tolist()
    assert result.positions_known is positions
    if positions:
        assert got["essay_a_id"].tolist() == expected["essay_a_id"].tolist()
        assert got["essay_b_id"].tolist() == expected["essay_b_id"].tolist()
    assert ("judge_id" in got.columns) is judge
    if judge:
        assert got["judge_id"].tolist() == expected["judge_id"].tolist()


def test_column_names_ignore_case_spaces_dots_and_underscores():
    names = [
        "Candidate Not Chosen",
        "candidate_not_chosen",
        "Candidate.Not.Chosen",
        "CANDIDATE-NOT-CHOSEN",
    ]
    assert {normalise_column_name(n) for n in names} == {"candidatenotchosen"}


def test_nmm_export_converts_milliseconds_skips_excluded_and_imports_a_repeated_id_once(expected):
    result = read_judgement_file(FIXTURES / "nmm_export.csv")
    got = result.decisions
    assert (result.rows_read, result.excluded, result.duplicates) == (35, 2, 1)
    assert len(got) == 32
    assert got["decision_id"].tolist() == expected["decision_id"].tolist()
    assert got["seconds_taken"].tolist() == pytest.approx(
        expected["seconds_taken"].astype(float).tolist()
    )
    assert got["decided_at"].dt.tz is not None
    assert got["decided_at"].iloc[1] == pd.Timestamp("2024-03-01T09:07:00Z")
    assert set(got["task"]) == {"essay-2024"}
    # The index is the spreadsheet row: row 5 (an excluded row) is not there.
    assert 5 not in got.index and got.index[0] == 2


def test_read_judgements_returns_the_frame_with_its_counts():
    frame = read_judgements(FIXTURES / "nmm_export.csv")
    assert isinstance(frame, pd.DataFrame)
    assert frame.attrs["judgement_file"]["excluded"] == 2
    assert frame.attrs["judgement_file"]["duplicates"] == 1
    assert frame.attrs["judgement_file"]["layout"] == "nmm"


def test_r_style_time_taken_is_seconds(expected):
    got = read_judgement_file(FIXTURES / "r_style_dotted.csv").decisions
    assert got["seconds_taken"].tolist() == pytest.approx(
        expected["seconds_taken"].astype(float).tolist()
    )


def test_multi_task_file_needs_a_task_and_lists_them():
    with pytest.raises(JudgementFileError) as err:
        read_judgement_file(FIXTURES / "nmm_two_tasks.csv")
    message = str(err.value)
    assert "nmm_two_tasks.csv" in message
    assert "essay-2024 (35 rows)" in message and "letter-2024 (32 rows)" in message
    assert "--task" in message
    result = read_judgement_file(FIXTURES / "nmm_two_tasks.csv", task="letter-2024")
    assert len(result.decisions) == 32 and result.other_tasks == 35
    assert set(result.decisions["task"]) == {"letter-2024"}
    assert result.excluded == 0  # the excluded rows belong to the other task
    with pytest.raises(JudgementFileError, match=r"has no task 'poem'.*essay-2024, letter-2024"):
        read_judgement_file(FIXTURES / "nmm_two_tasks.csv", task="poem")


def test_excel_workbook_is_read_like_its_csv(tmp_path, expected):
    script = _fixture_script()
    path = tmp_path / "judge_candidate.xlsx"
    script.write_xlsx(path, script.base_decisions())
    result = read_judgement_file(path)
    assert result.layout == "candidate"
    assert result.rows_read == 32  # the trailing blank row is not a decision
    assert result.decisions["winner_id"].tolist() == expected["winner_id"].tolist()
    assert result.decisions["seconds_taken"].tolist() == pytest.approx(
        expected["seconds_taken"].astype(float).tolist()
    )


def test_columns_mapping_reads_any_layout(expected):
    mapping = {"winner_id": "Preferred", "loser_id": "other", "judge_id": "Marker",
               "seconds_taken": "Secs"}  # fmt: skip
    result = read_judgement_file(FIXTURES / "custom_columns.csv", columns=mapping)
    assert result.layout == "mapped"
    assert result.decisions["winner_id"].tolist() == expected["winner_id"].tolist()
    assert result.decisions["judge_id"].tolist() == expected["judge_id"].tolist()
    assert result.columns["loser_id"] == "Other"


def test_mapping_wins_over_the_layout(expected):
    # Swap the NMM columns on purpose: the mapping must be obeyed.
    result = read_judgement_file(
        FIXTURES / "nmm_export.csv", columns={"winner_id": "notChosen", "loser_id": "chosen"}
    )
    assert result.decisions["winner_id"].tolist() == expected["loser_id"].tolist()


def test_unknown_mapping_names_are_refused():
    with pytest.raises(JudgementFileError, match=r"--column winnr_id=.*names no canonical"):
        read_judgement_file(FIXTURES / "custom_columns.csv", columns={"winnr_id": "Preferred"})
    with pytest.raises(JudgementFileError, match="no column 'Nope'; found: Preferred, Other"):
        read_judgement_file(FIXTURES / "custom_columns.csv", columns={"winner_id": "Nope"})


def test_a_forced_format_says_which_columns_it_misses():
    with pytest.raises(JudgementFileError, match="format won_lost needs columns for loser_id"):
        read_judgement_file(FIXTURES / "nmm_export.csv", format="won_lost")
    with pytest.raises(JudgementFileError, match="unknown format 'xml'"):
        read_judgement_file(FIXTURES / "nmm_export.csv", format="xml")


BAD = {
    "bad_empty_winner.csv": ["empty winner (candidate_chosen)", "rows 4, 8"],
    "bad_same_both_sides.csv": ["same id on both sides ('a3')", "row 6"],
    "bad_unknown_layout.csv": [
        "no recognisable decision columns",
        "found: rater, first essay, second essay, preference",
        "--column canonical=source",
    ],
    "bad_latin1.csv": ["not UTF-8", "line 3", "re-save it as UTF-8"],
    "bad_choice.csv": ["choice 'middle' is not a side", "row 5", "left/right or A/B"],
    "bad_conflicting_duplicate.csv": ["decision id 'd001' repeats", "row 34"],
    "bad_time.csv": ["seconds_taken is not a time ('soon')", "row 3"],
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_one_line_naming_file_rows_and_problem(name):
    with pytest.raises(JudgementFileError) as err:
        read_judgement_file(FIXTURES / name)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(FIXTURES / name))
    for part in BAD[name]:
        assert part in message
    assert err.value.exit_code == 2


def test_many_bad_rows_are_listed_first_few_then_counted(tmp_path):
    path = tmp_path / "many.csv"
    path.write_text("winner,loser\n" + "".join(f",s{i}\n" for i in range(9)), encoding="utf-8")
    with pytest.raises(JudgementFileError, match=r"rows 2, 3, 4, 5, 6 \(and 4 more\)"):
        read_judgement_file(path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "is empty"),
        ("winner,loser\n", "has a header but no decisions"),
        ("winner,loser,exclude\ns1,s2,true\n", "no decisions left to import (1 excluded"),
        ("winner,loser,exclude\ns1,s2,maybe\n", "exclude is neither true nor false"),
        ("left,right,isLeft\ns1,s2,\ns2,s3,true\n", "empty isLeft in row 2"),
        ("winner,loser,createdAt\ns1,s2,yesterday\n", "createdAt 'yesterday' is not a date"),
        ("ID1,ID2,better_id\ns1,s2,s3\n", "better_id is neither ID1 nor ID2 in row 2"),
    ],
)
def test_small_bad_files(tmp_path, content, problem):
    path = tmp_path / "decisions.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(JudgementFileError) as err:
        read_judgement_file(path)
    assert problem in str(err.value)


def test_missing_file_and_old_excel_are_refused(tmp_path):
    with pytest.raises(JudgementFileError, match="no such file"):
        read_judgement_file(tmp_path / "absent.csv")
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(JudgementFileError, match=r"\.xls files are not read"):
        read_judgement_file(old)


def test_utf16_export_with_bom_is_read(tmp_path):
    path = tmp_path / "unicode.txt"
    path.write_text("Winner\tLoser\nÅsa-1\tBjörn-2\n", encoding="utf-16")
    got = read_judgement_file(path).decisions
    assert got[["winner_id", "loser_id"]].values.tolist() == [["Åsa-1", "Björn-2"]]


def test_ids_keep_leading_zeros_and_are_stripped(tmp_path):
    path = tmp_path / "zeros.csv"
    path.write_text("won,lost\n 007 ,010\n", encoding="utf-8")
    got = read_judgement_file(path).decisions
    assert got[["winner_id", "loser_id"]].values.tolist() == [["007", "010"]]


def test_anchor_grades_file():
    assert read_anchor_grades(FIXTURES / "anchors.csv") == {"a1": "E+", "a2": "C+", "a3": "A"}


def test_anchor_grades_with_two_grades_for_one_essay_are_refused(tmp_path):
    path = tmp_path / "anchors.csv"
    path.write_text("essay_id,grade\na1,E+\na1,A\n", encoding="utf-8")
    with pytest.raises(JudgementFileError, match="'a1' has two different grades in rows 2, 3"):
        read_anchor_grades(path)
    path.write_text("id,mark\na1,E+\n", encoding="utf-8")
    with pytest.raises(JudgementFileError, match="needs columns essay_id and grade"):
        read_anchor_grades(path)


def test_cjlib_own_comparisons_are_read_with_positions(tmp_path):
    path = tmp_path / "comparisons.csv"
    path.write_text(
        "essay_a_id,essay_b_id,winner,judge_id\ns1,s2,essay_b,j1\ns2,s3,essay_a,j2\n",
        encoding="utf-8",
    )
    result = read_judgement_file(path)
    assert result.layout == "cjlib"
    got = result.decisions
    assert got[["winner_id", "loser_id"]].values.tolist() == [["s2", "s1"], ["s2", "s3"]]
    assert got["essay_a_id"].tolist() == ["s1", "s2"]


def test_column_mapping_option_parsing():
    from cjlib.cli.judgements import parse_column_mappings
    from cjlib.errors import UsageError

    assert parse_column_mappings(["winner_id = Chosen One", "loser_id=Other"]) == {
        "winner_id": "Chosen One",
        "loser_id": "Other",
    }
    with pytest.raises(UsageError, match="given twice"):
        parse_column_mappings(["winner_id=A", "winner_id=B"])
    with pytest.raises(UsageError, match="write canonical=source"):
        parse_column_mappings(["winner_id="])


def test_bulk_timestamps_refuse_naive_datetimes_and_match_each_backend():
    from datetime import UTC, datetime

    from cjlib.db.bulk import timestamp_text, timestamp_texts

    aware = datetime(2024, 3, 1, 9, 7, 30, 250000, tzinfo=UTC)
    assert timestamp_text("sqlite", aware) == "2024-03-01 09:07:30.250000"
    assert timestamp_text("postgresql", aware) == "2024-03-01T09:07:30.250000+00:00"
    with pytest.raises(ValueError, match="naive datetime"):
        timestamp_text("sqlite", datetime(2024, 3, 1))
    series = pd.Series(pd.to_datetime(["2024-03-01T09:07:30.25Z", None], utc=True))
    assert timestamp_texts("sqlite", series).tolist() == ["2024-03-01 09:07:30.250000", None]
    assert timestamp_texts("postgresql", series).tolist() == [
        "2024-03-01T09:07:30.250000+00:00",
        None,
    ]
