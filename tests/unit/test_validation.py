"""cjlib.validation: integers, text and folders checked against what both databases store."""

from __future__ import annotations

import math
import os
import subprocess

import pytest
from sqlalchemy import Column, MetaData, SmallInteger, Table

from cjlib.db.models import (
    AnchorEssayReference,
    CJBatchState,
    CJBatchUpload,
    CJContent,
    CJProcessedEssay,
)
from cjlib.errors import UsageError
from cjlib.validation import (
    INT32_MAX,
    INT64_MAX,
    check_db_integer,
    check_positive_finite,
    check_text,
    check_writable_dir,
    column_length,
    integer_range,
)


def test_column_length_reads_string_lengths_from_the_models():
    assert column_length(CJBatchUpload.assignment_id) == 100
    assert column_length(CJBatchUpload.batch_label) == 255
    assert column_length(AnchorEssayReference.grade) == 20
    assert column_length(CJContent.content) is None  # Text is unbounded


def test_integer_range_follows_the_column_type():
    assert integer_range() == (-(2**63), 2**63 - 1)
    assert integer_range(CJBatchUpload.id) == (-(2**31), 2**31 - 1)
    assert integer_range(CJBatchState.total_budget) == (-(2**31), 2**31 - 1)
    small = Table("t", MetaData(), Column("n", SmallInteger))
    assert integer_range(small.c.n) == (-(2**15), 2**15 - 1)
    with pytest.raises(TypeError, match="not an integer column"):
        integer_range(CJBatchUpload.batch_label)


@pytest.mark.parametrize("value", [1, 660, INT32_MAX])
def test_integers_a_32_bit_column_holds_pass_unchanged(value):
    assert check_db_integer("--max-comparisons", value, CJBatchState.total_budget) == value


@pytest.mark.parametrize("value", [INT32_MAX + 1, 3_000_000_000, 10**23, -(2**31) - 1])
def test_integers_beyond_a_32_bit_column_are_refused_in_one_line(value):
    with pytest.raises(UsageError) as refused:
        check_db_integer("--max-comparisons", value, CJBatchState.total_budget)
    message = str(refused.value)
    assert message.startswith("--max-comparisons must be between")
    assert "cj_batch_states.total_budget" in message and str(value) in message
    assert "\n" not in message


def test_without_a_column_the_range_is_signed_64_bit():
    assert check_db_integer("CJ_BATCH_ID", INT64_MAX) == INT64_MAX
    with pytest.raises(UsageError, match="between"):
        check_db_integer("CJ_BATCH_ID", INT64_MAX + 1)


def test_minimum_narrows_the_range():
    assert check_db_integer("--max-comparisons", 2, minimum=2) == 2
    with pytest.raises(UsageError, match="between 2 and 2147483647"):
        check_db_integer("--max-comparisons", 1, CJBatchState.total_budget, minimum=2)


@pytest.mark.parametrize("value", [True, 2.0, "5", None])
def test_non_integers_are_refused(value):
    with pytest.raises(UsageError, match="whole number"):
        check_db_integer("--seed", value)


def test_text_within_its_column_passes_unchanged():
    value = "é" * 100  # characters, not bytes, are what VARCHAR(100) counts
    assert check_text("--assignment-id", value, column_length(CJBatchUpload.assignment_id)) == (
        value
    )


def test_text_longer_than_its_column_is_refused():
    with pytest.raises(UsageError) as refused:
        check_text("--assignment-id", "a" * 300, column_length(CJBatchUpload.assignment_id))
    assert str(refused.value) == (
        "--assignment-id is 300 characters long; at most 100 fit, shorten it"
    )


@pytest.mark.parametrize("value", ["\x00", "essay\x00text", "\x00" * 3])
def test_text_with_a_nul_character_is_refused_even_when_unbounded(value):
    with pytest.raises(UsageError, match="NUL character"):
        check_text(
            "students.csv row 2", value, column_length(CJProcessedEssay.assessment_input_text)
        )


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_required_text_refuses_blank(value):
    assert check_text("--batch-id", value) == value
    with pytest.raises(UsageError, match="--batch-id is empty"):
        check_text("--batch-id", value, 255, required=True)


def test_non_text_is_refused():
    with pytest.raises(UsageError, match="must be text"):
        check_text("--course-id", 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0.001, 1, 600, 1e9])
def test_positive_finite_numbers_pass_as_float(value):
    result = check_positive_finite("--completion-timeout", value)
    assert result == float(value) and isinstance(result, float)


@pytest.mark.parametrize("value", [0, -1, -0.0, math.nan, math.inf, -math.inf])
def test_zero_negative_nan_and_infinite_are_refused(value):
    with pytest.raises(UsageError, match="--completion-timeout must be a finite number"):
        check_positive_finite("--completion-timeout", value)


@pytest.mark.parametrize("value", [True, "5", None])
def test_non_numbers_are_refused(value):
    with pytest.raises(UsageError, match="must be a number"):
        check_positive_finite("--completion-timeout", value)


def test_writable_dir_accepts_an_existing_or_creatable_folder_and_creates_nothing(tmp_path):
    assert check_writable_dir(tmp_path) == tmp_path
    nested = tmp_path / "a" / "b"
    assert check_writable_dir(nested) == nested
    assert not (tmp_path / "a").exists()


def test_writable_dir_refuses_a_file_and_a_path_below_a_file(tmp_path):
    file = tmp_path / "passwd"
    file.write_text("root:x:0:0\n")
    with pytest.raises(UsageError, match="is not a folder"):
        check_writable_dir(file)
    with pytest.raises(UsageError, match=f"is inside {file}, which is not a folder"):
        check_writable_dir(file / "runs")


@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder nobody may add entries to: mode 555, or immutable for root (who ignores modes)."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() != 0:
        yield locked
        return
    made = subprocess.run(["chattr", "+i", str(locked)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a folder immutable here: {made.stderr.decode().strip()}")
    try:
        yield locked
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)


def test_writable_dir_refuses_a_folder_that_cannot_be_written(unwritable_folder):
    with pytest.raises(UsageError, match=f"folder {unwritable_folder} is not writable"):
        check_writable_dir(unwritable_folder / "runs")
