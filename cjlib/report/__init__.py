"""The validation report of one CJ batch: its data, success checklist, tables, figures, caveats.

Notebook ``04_validation_report`` is a sequence of calls into this package; everything it
shows is computed here so that the notebook stays a list of short cells (and so the logic is
tested). One module per job::

    loading      load_batch(engine, id) -> BatchRecord; stored_scores, load_true_grades
    assembly     assemble_report(frames, truth) / build_report(engine, id) -> BatchReport
    checklist    success_checklist(engine, id) -> the pass/fail lines of a healthy batch
    design_check batch_design_reliability(report) -> SSR beside split-half and null baseline
    tables       run_summary, reliability_table, … -> DataFrames
    figures      plot_*() -> matplotlib Figures (the only module that imports matplotlib)
    limitations  limitations(report) -> the caveats, one sentence each
    html         html_table, checklist_html, header_markdown, limitations_markdown (escaped)
    snapshots    write_snapshots(frames, run_dir) -> CSV / Parquet files

The names below are imported from their module on first use, so only
:mod:`cjlib.report.figures` (first touched by a ``plot_*`` name or ``FIGURES``) loads matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "loading": (
        "BatchRecord",
        "import_info",
        "load_batch",
        "load_true_grades",
        "positions_known",
        "stored_scores",
        "win_loss_counts",
    ),
    "assembly": ("BatchReport", "assemble_report", "build_report"),
    "design_check": (
        "REPORT_SPLITS",
        "batch_design_reliability",
        "design_reliability_table",
        "inflation_sentence",
    ),
    "checklist": ("CHECKS", "FINAL_STATE_SEQUENCE", "evaluate_checklist", "success_checklist"),
    "tables": (
        "LLM_SECTION_MARKDOWN",
        "POSITION_CI_LEVEL",
        "accuracy_table",
        "anchor_check_table",
        "batch_health_row",
        "calibration_table",
        "confusion_table",
        "MISFIT_SD",
        "SPLIT_HALF_SPLITS",
        "import_table",
        "inversions_table",
        "has_judge_calls",
        "judge_fit_table",
        "judge_misfit",
        "judge_panel_table",
        "llm_calls_table",
        "llm_order_table",
        "position_table",
        "reliability_table",
        "run_summary",
        "split_half_reliability",
        "split_half_table",
        "transitions_table",
    ),
    "figures": (
        "FIGURES",
        "plot_anchor_calibration",
        "plot_bt_scores",
        "plot_comparisons_per_essay",
        "plot_confusion_matrix",
        "plot_decisions_over_time",
        "plot_grade_probabilities",
        "plot_position_effect",
        "plot_reliability_diagram",
    ),
    "limitations": ("LOW_RELIABILITY", "MIN_COMPARISONS_PER_ESSAY", "limitations"),
    "html": (
        "DECISIONS_OVER_TIME_MARKDOWN",
        "JUDGE_PANEL_MARKDOWN",
        "PANEL_MARKDOWN",
        "SPLIT_HALF_MARKDOWN",
        "checklist_html",
        "header_markdown",
        "html_table",
        "limitations_markdown",
        "markdown_text",
    ),
    "snapshots": ("SNAPSHOT_TABLES", "snapshot_tables", "write_snapshots"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

# The function shares its module's name. Importing a submodule sets it as an attribute of this
# package, which would shadow the lazily exported function (``report.limitations(rep)`` would
# then be a module); binding the function here, after the submodule's first import, prevents it.
from cjlib.report.limitations import limitations  # noqa: E402, F401

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    # PEP 562: a name is looked up in its module on first access, then cached in this
    # namespace, so only the modules a caller uses are imported.
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
