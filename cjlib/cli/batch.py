"""``cj batch …``: run, inspect and clean up CJ batches.

``execute`` drives :func:`cjlib.workflow.execute_batch`, ``inspect`` renders
:func:`cjlib.diagnostics.inspect_batch`, ``cleanup`` calls :mod:`cjlib.maintenance`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cjlib.cli import _llm
from cjlib.cli._common import (
    BATCH_LABEL_HELP,
    BatchId,
    DatabaseUrl,
    JsonFlag,
    age,
    console,
    err_console,
    open_engine,
    print_json,
    show,
    when,
)
from cjlib.errors import UsageError

if TYPE_CHECKING:
    from cjlib.diagnostics import BatchInspection

app = typer.Typer(help="Run, inspect and clean up CJ batches.", no_args_is_help=True)


@app.command("execute")
def execute(
    assignment_id: Annotated[str, typer.Option("--assignment-id", help="Assignment id.")],
    course_id: Annotated[str, typer.Option("--course-id", help="Course id.")],
    batch_label: Annotated[str, typer.Option("--batch-label", "--batch-id", help=BATCH_LABEL_HELP)],
    max_comparisons: Annotated[
        int, typer.Option("--max-comparisons", help="Comparison budget (≥ 2).")
    ],
    judge: Annotated[
        str, typer.Option("--judge", help="Judge: simulated (alias mock), llm or replay.")
    ] = "simulated",
    seed: Annotated[int, typer.Option("--seed", help="Seed of judge and pairing.")] = 0,
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="Student essays folder.")
    ] = None,
    await_completion: Annotated[
        bool, typer.Option("--await-completion", help="Wait for completion, with a deadline.")
    ] = False,
    completion_timeout: Annotated[
        float, typer.Option("--completion-timeout", help="Seconds to wait for completion.")
    ] = 600.0,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="Parent folder of the run folder.")
    ] = Path("reports/runs"),
    verbose: Annotated[bool, typer.Option("--verbose", help="Log each wave.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    database_url: DatabaseUrl = None,
    pairing: Annotated[
        str, typer.Option("--pairing", help="Pairing strategy: balanced, adaptive, boundary.")
    ] = "balanced",
    pairing_param: Annotated[
        list[str] | None,
        typer.Option("--pairing-param", help="Strategy parameter key=value; repeatable."),
    ] = None,
    target_reliability: Annotated[
        float | None,
        typer.Option("--target-reliability", help="Stop at this design-honest reliability."),
    ] = None,
    target_grade_certainty: Annotated[
        float | None,
        typer.Option("--target-grade-certainty", help="Stop when every top grade has P ≥ this."),
    ] = None,
    # -- LLM judge options (cjlib/cli/_llm.py) --
    llm_base_url: _llm.LLMBaseUrl = None,
    llm_model: _llm.LLMModel = None,
    prompt_template: _llm.PromptTemplateFile = None,
    concurrency: _llm.Concurrency = None,
    requests_per_minute: _llm.RequestsPerMinute = None,
    max_cost_usd: _llm.MaxCostUsd = None,
    both_orders: _llm.BothOrders = False,
    replay_from: _llm.ReplayFrom = None,
    llm_price_prompt: _llm.PricePrompt = None,
    llm_price_completion: _llm.PriceCompletion = None,
    llm_temperature: _llm.Temperature = None,
) -> None:
    """Run a CJ batch: create it, judge pairs in waves, finalize, write artefacts."""
    from cjlib.pipeline import parse_parameters
    from cjlib.workflow import execute_batch

    if verbose:
        logging.getLogger("cjlib").setLevel(logging.INFO)
    # -- LLM judge options --
    llm = _llm.llm_settings(
        base_url=llm_base_url, model=llm_model, prompt_template=prompt_template,
        requests_per_minute=requests_per_minute, price_prompt=llm_price_prompt,
        price_completion=llm_price_completion, temperature=llm_temperature,
    )  # fmt: skip
    judge_options = {
        "llm": llm or None,
        "concurrency": concurrency,
        "max_cost_usd": max_cost_usd,
        "both_orders": both_orders or None,
        "replay_from": replay_from,
    }
    result = execute_batch(
        open_engine(database_url),
        assignment_id=assignment_id,
        course_id=course_id,
        batch_label=batch_label,
        max_comparisons=max_comparisons,
        judge=judge,
        seed=seed,
        dataset=dataset,
        await_completion=await_completion,
        completion_timeout=completion_timeout,
        output_dir=output_dir,
        progress=not as_json,
        pairing=pairing,
        pairing_params=parse_parameters(pairing_param or []),
        target_reliability=target_reliability,
        target_grade_certainty=target_grade_certainty,
        **judge_options,
    )
    summary = result.summary()
    if as_json:
        print_json(summary)
        return
    table = Table(
        title=f"CJ batch {result.cj_batch_id} ({show(result.batch_label)})", show_header=False
    )
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        table.add_row(key, show(value))
    console.print(table)
    if result.status != "COMPLETE_STABLE" or result.state != "COMPLETED":
        err_console.print(
            f"batch {result.cj_batch_id} ended {result.status}/{result.state}", markup=False
        )
        raise typer.Exit(1)


def _render_inspection(report: BatchInspection) -> None:
    row = report.health_row
    summary = Table(title=f"CJ batch {report.cj_batch_id}", show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column()
    for label, value in (
        ("health", report.health),
        ("upload status", report.upload_status),
        ("CJ state", show(report.cj_state)),
        ("in state for", age(row["seconds_in_state"])),
        ("batch label", show(report.batch_label)),
        ("assignment", show(report.assignment_id)),
        ("bos_batch_id", show(report.bos_batch_id)),
        (
            "essays",
            f"{report.essay_count} ({report.anchor_count} anchors, "
            f"{report.non_anchor_count} students)",
        ),
        ("grade projections", str(report.grade_projection_count)),
        ("created", when(report.created_at)),
        (
            "last activity",
            f"{when(report.last_activity_at)} ({age(row['seconds_since_last_activity'])} ago)",
        ),
        ("completed", when(report.completed_at)),
        ("completion reason", show(report.completion_reason)),
    ):
        summary.add_row(label, value, end_section=False)
    console.print(summary)

    comparisons = Table(title="Comparisons")
    comparisons.add_column("")
    comparisons.add_column("state row", justify="right")
    comparisons.add_column("counted pairs", justify="right")
    state, pairs = report.comparisons_from_state, report.comparisons_from_pairs
    for name in ("total", "submitted", "completed", "failed"):
        recorded = "-" if state is None else str(getattr(state, name))
        counted = str(getattr(pairs, name))
        marker = "" if recorded == counted else "  [bold red]≠[/]"
        comparisons.add_row(name, recorded, counted + marker)
    console.print(comparisons)
    if not report.comparisons_agree:
        console.print("[bold red]state row counters disagree with cj_comparison_pairs[/]")

    if report.anchor_disagreements:
        drift = Table(title="Anchor flag disagreements (metadata vs column)")
        drift.add_column("els_essay_id")
        drift.add_column("is_anchor column")
        drift.add_column("metadata is_anchor")
        for item in report.anchor_disagreements:
            drift.add_row(
                show(item.els_essay_id), str(item.is_anchor), show(repr(item.metadata_is_anchor))
            )
        console.print(drift)

    if report.judge_calls:
        calls = report.judge_calls
        cost = calls["cost_usd"]
        llm = Table(title="LLM judge calls", show_header=False)
        llm.add_column(style="bold")
        llm.add_column(justify="right")
        for label, value in (
            ("calls", calls["calls"]),
            ("retries", calls["retries"]),
            ("failed calls", calls["failed"]),
            ("prompt tokens", calls["prompt_tokens"]),
            ("completion tokens", calls["completion_tokens"]),
            ("estimated cost (USD)", "unknown (no price)" if cost is None else f"{cost:.4f}"),
        ):
            llm.add_row(label, str(value))
        console.print(llm)

    transitions = Table(title=f"State transitions (last {len(report.transitions)})")
    transitions.add_column("at")
    transitions.add_column("from")
    transitions.add_column("to")
    transitions.add_column("reason")
    for item in report.transitions:
        transitions.add_row(
            when(item.at), show(item.from_state), show(item.to_state), show(item.reason)
        )
    console.print(transitions)


@app.command("inspect")
def inspect(
    cj_batch_id: BatchId,
    json_output: JsonFlag = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Show one batch: statuses, comparison counters, anchors, activity, transitions, health."""
    from cjlib.diagnostics import inspect_batch

    engine = open_engine(database_url)
    try:
        report = inspect_batch(engine, cj_batch_id)
    finally:
        engine.dispose()
    if json_output:
        print_json(report.to_dict())
    else:
        _render_inspection(report)


@app.command("cleanup")
def cleanup(
    cj_batch_id: Annotated[
        int | None,
        typer.Argument(
            metavar="CJ_BATCH_ID",
            min=1,
            max=2**63 - 1,
            help="Batch to delete (or use --assignment-id).",
            show_default=False,
        ),
    ] = None,
    assignment_id: Annotated[
        str | None, typer.Option("--assignment-id", help="Delete every batch of this assignment.")
    ] = None,
    keep_anchors: Annotated[
        bool,
        typer.Option(
            "--keep-anchors/--drop-anchors",
            help="With --assignment-id: keep or also delete its anchors and instructions.",
        ),
    ] = True,
    json_output: JsonFlag = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a batch, or all batches of an assignment, from a local dev/test database."""
    from cjlib.maintenance import cleanup_assignment, cleanup_batch, ensure_disposable_database

    if (cj_batch_id is None) == (assignment_id is None):
        raise UsageError("give either CJ_BATCH_ID or --assignment-id (exactly one)")
    if cj_batch_id is not None and not keep_anchors:
        raise UsageError("--drop-anchors applies to --assignment-id only")
    ensure_disposable_database(database_url)
    engine = open_engine(database_url)
    try:
        if cj_batch_id is not None:
            summary = cleanup_batch(engine, cj_batch_id)
        else:
            summary = cleanup_assignment(engine, assignment_id, keep_anchors=keep_anchors)
    finally:
        engine.dispose()
    if json_output:
        print_json(summary.to_dict())
        return
    target = (
        f"batch {cj_batch_id}"
        if cj_batch_id is not None
        else f"assignment {show(assignment_id)} ({len(summary.cj_batch_ids)} batches)"
    )
    table = Table(title=f"Deleted rows: {target}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in summary.deleted.items():
        table.add_row(name, str(count))
    table.add_row("total", str(summary.total), style="bold")
    console.print(table)
