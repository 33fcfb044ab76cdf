"""Execute a CJ batch end to end: create it, judge pairs in waves, finalize, write artefacts.

This is the code under ``cj batch execute`` and notebook ``02_execute_eng5_batch``.

When to finalize (checked after every wave, first match wins):

* ``budget_exhausted``: ``max_comparisons`` pairs have been submitted and their callbacks are in;
* ``all_pairs_compared``: every pair of essays has been compared once (more waves would repeat);
* ``stable``: from the third wave on, every essay has at least :data:`STABILITY_MIN_COMPARISONS`
  successful comparisons and no essay's θ moved more than :data:`STABILITY_THRESHOLD` logits
  since the previous wave (θ from a weakly penalised BT fit, α = ``FALLBACK_ALPHA``).

A callback that has not arrived ``callback_grace`` seconds after the last one of its wave is
declared lost and recorded as a failed comparison (``error_code = callback_lost``); if it comes
later it is ignored as late. The whole run must finish within ``completion_timeout`` seconds
when ``await_completion`` is set; otherwise :class:`CompletionTimeout` is raised and the batch
stays in WAITING_CALLBACKS for diagnostics.
"""

from __future__ import annotations

import logging
import math
import queue
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select

from cjlib.datasets import default_dataset_dir, load_dataset
from cjlib.db import session_scope
from cjlib.db.models import (
    AnchorEssayReference,
    AssessmentInstruction,
    CJBatchState,
    CJBatchStatusEnum,
    CJBatchUpload,
    CJProcessedEssay,
    CoreCJState,
    GradeProjection,
)
from cjlib.db.queries import decided_comparisons
from cjlib.db.repository import (
    create_batch_upload,
    create_or_update_cj_processed_essay,
    fetch_content,
    record_state_transition,
    store_content,
)
from cjlib.errors import BatchRefused, CompletionTimeout
from cjlib.judges import JudgeResult, PairRequest, make_judge
from cjlib.pairing import PairingState, all_pairs_seen, next_wave
from cjlib.scoring import fit_bradley_terry
from cjlib.workflow.callbacks import CallbackOutcome, record_callback, submit_pairs
from cjlib.workflow.finalizer import FALLBACK_ALPHA, BatchFinalizer, FinalizationResult

log = logging.getLogger(__name__)

STABILITY_THRESHOLD = 0.05
STABILITY_MIN_COMPARISONS = 10
DEFAULT_JUDGE_PARAMS: Mapping[str, float] = {
    "discrimination": 1.0,
    "position_bias": 0.1,
    "error_rate": 0.01,
    "lost_rate": 0.0,
}


@dataclass(frozen=True)
class BatchRunResult:
    """Outcome of :func:`execute_batch`."""

    cj_batch_id: int
    bos_batch_id: str
    batch_label: str
    assignment_id: str
    status: str
    state: str
    completion_reason: str | None
    total_comparisons: int
    submitted_comparisons: int
    completed_comparisons: int
    failed_comparisons: int
    anchor_count: int
    student_count: int
    projection_count: int
    waves: int
    run_dir: Path | None
    artefacts: Mapping[str, Path] = field(default_factory=dict)
    finalization: FinalizationResult | None = None

    def summary(self) -> dict[str, Any]:
        """The run summary as plain data (what ``cj batch execute`` prints)."""
        return {
            "cj_batch_id": self.cj_batch_id,
            "bos_batch_id": self.bos_batch_id,
            "batch_label": self.batch_label,
            "assignment_id": self.assignment_id,
            "status": self.status,
            "state": self.state,
            "completion_reason": self.completion_reason,
            "comparisons": {
                "total": self.total_comparisons,
                "submitted": self.submitted_comparisons,
                "completed": self.completed_comparisons,
                "failed": self.failed_comparisons,
            },
            "anchors": self.anchor_count,
            "students": self.student_count,
            "grade_projections": self.projection_count,
            "waves": self.waves,
            "run_dir": str(self.run_dir) if self.run_dir else None,
        }


def _validate_and_load(
    engine: Engine,
    assignment_id: str,
    max_comparisons: int,
    dataset: str | Path | None,
) -> tuple[list[AnchorEssayReference], dict[str, str], Any]:
    if max_comparisons < 2:
        raise BatchRefused(
            f"--max-comparisons must be at least 2 (got {max_comparisons}): "
            "one comparison cannot place any essay relative to another"
        )
    with session_scope(engine) as session:
        instr = session.scalars(
            select(AssessmentInstruction).where(
                AssessmentInstruction.assignment_id == assignment_id
            )
        ).one_or_none()
        if instr is None:
            raise BatchRefused(
                f"assignment {assignment_id!r} has no assessment instructions; run "
                f"`cj anchors register --assignment-id {assignment_id} …` first"
            )
        refs = session.scalars(
            select(AnchorEssayReference)
            .where(
                AnchorEssayReference.assignment_id == assignment_id,
                AnchorEssayReference.grade_scale == instr.grade_scale,
            )
            .order_by(AnchorEssayReference.anchor_label)
        ).all()
        if not refs:
            raise BatchRefused(
                f"assignment {assignment_id!r} has no anchors on {instr.grade_scale}; run "
                f"`cj anchors register --assignment-id {assignment_id} …` first"
            )
        anchor_texts = {}
        for ref in refs:
            content = fetch_content(session, ref.text_storage_id)
            if content is None:
                raise BatchRefused(
                    f"anchor {ref.anchor_label} text {ref.text_storage_id[:12]}… is missing from "
                    "the content store; re-run `cj anchors register`"
                )
            anchor_texts[ref.anchor_label] = content
    data = load_dataset(dataset or default_dataset_dir(), grade_scale=instr.grade_scale)
    if len(data.students) < 2:
        raise BatchRefused(
            f"data set {data.path} has {len(data.students)} student essay(s); a batch needs "
            "at least 2"
        )
    clash = set(data.students["essay_id"].astype(str)) & set(anchor_texts)
    if clash:
        raise BatchRefused(
            f"student ids collide with anchor labels: {', '.join(sorted(clash)[:5])}; "
            "rename the student files"
        )
    return refs, anchor_texts, data


def _create_batch(
    engine: Engine,
    *,
    assignment_id: str,
    course_id: str,
    batch_label: str,
    max_comparisons: int,
    refs: list[AnchorEssayReference],
    anchor_texts: dict[str, str],
    data: Any,
    run_params: Mapping[str, Any],
) -> int:
    students = data.students
    with session_scope(engine) as session:
        upload = create_batch_upload(
            session,
            assignment_id=assignment_id,
            course_id=course_id,
            batch_label=batch_label,
            language="en",
            course_code=course_id,
            expected_essay_count=len(students),
            total_budget=max_comparisons,
            processing_metadata={"run": dict(run_params)},
        )
        upload.status = CJBatchStatusEnum.FETCHING_CONTENT
        for row in students.itertuples(index=False):
            key = store_content(session, row.text)
            create_or_update_cj_processed_essay(
                session,
                cj_batch_id=upload.id,
                els_essay_id=str(row.essay_id),
                text_storage_id=key,
                assessment_input_text=row.text,
                processing_metadata={"is_anchor": False, "source_file": str(row.file)},
            )
        for ref in refs:
            create_or_update_cj_processed_essay(
                session,
                cj_batch_id=upload.id,
                els_essay_id=ref.anchor_label,
                text_storage_id=ref.text_storage_id,
                assessment_input_text=anchor_texts[ref.anchor_label],
                processing_metadata={
                    "is_anchor": True,
                    "anchor_label": ref.anchor_label,
                    "anchor_grade": ref.grade,
                    "grade_scale": ref.grade_scale,
                },
            )
        upload.status = CJBatchStatusEnum.PERFORMING_COMPARISONS
        return upload.id


def _stable(
    engine: Engine, batch_id: int, previous: pd.Series | None, threshold: float
) -> tuple[bool, pd.Series | None, float | None]:
    with session_scope(engine) as session:
        frame = decided_comparisons(session, batch_id)
    if frame.empty:
        return False, previous, None
    scores = fit_bradley_terry(frame, alpha=FALLBACK_ALPHA).scores
    theta = scores["theta"]
    if previous is None or not previous.index.equals(theta.index.sort_values()):
        return False, theta.sort_index(), None
    change = float(np.max(np.abs(theta.sort_index().to_numpy() - previous.to_numpy())))
    enough = int(scores["n_comparisons"].min()) >= STABILITY_MIN_COMPARISONS
    return enough and change < threshold, theta.sort_index(), change


def execute_batch(
    engine: Engine,
    *,
    assignment_id: str,
    course_id: str,
    batch_label: str,
    max_comparisons: int,
    judge: str = "simulated",
    seed: int = 0,
    dataset: str | Path | None = None,
    await_completion: bool = True,
    completion_timeout: float = 600.0,
    callback_grace: float = 5.0,
    output_dir: str | Path | None = "reports/runs",
    run_dir: str | Path | None = None,
    judge_params: Mapping[str, Any] | None = None,
    wave_size: int | None = None,
    stability_threshold: float = STABILITY_THRESHOLD,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    finalize: bool = True,
) -> BatchRunResult:
    """Run one CJ batch for ``assignment_id`` from creation to completed projections.

    Parameters
    ----------
    max_comparisons : int
        Budget: at most this many pairs are submitted (≥ 2).
    judge : str
        ``simulated`` (alias ``mock``): decides from the data set's latent abilities.
    dataset : path, optional
        Folder with the student essays (default: ``data/eng5_np_2016``).
    await_completion, completion_timeout
        Enforce a deadline for the whole run; on expiry raise :class:`CompletionTimeout`.
    output_dir : path, optional
        Parent of the fresh run folder for artefacts; None writes no artefacts.
    run_dir : path, optional
        Write the artefacts into this folder instead (created if missing; the pipeline uses
        it so one run folder holds the batch's artefacts and the executed notebooks).
    judge_params : mapping, optional
        Overrides of :data:`DEFAULT_JUDGE_PARAMS` (``discrimination``, ``position_bias``,
        ``error_rate``, ``lost_rate``).
    progress : bool
        Show a Rich progress bar while waiting for callbacks.
    finalize : bool
        False stops after the last wave, leaving the batch in WAITING_CALLBACKS (for
        diagnostics and for finalizing elsewhere with :class:`BatchFinalizer`).

    Raises
    ------
    BatchRefused
        Before anything is written: no instructions or anchors, budget < 2, < 2 students.
    CompletionTimeout
        The deadline passed; the batch stays in WAITING_CALLBACKS.
    FinalizationError
        Finalization failed; the batch is FAILED with the reason.
    """
    refs, anchor_texts, data = _validate_and_load(engine, assignment_id, max_comparisons, dataset)
    params = {**DEFAULT_JUDGE_PARAMS, **(judge_params or {})}
    abilities = None
    if data.truth is not None:
        abilities = dict(
            zip(data.truth["essay_id"].astype(str), data.truth["ability"], strict=True)
        )
    judge_impl = make_judge(judge, abilities=abilities, seed=seed, **params)
    run_params = {
        "judge": judge,
        "judge_id": judge_impl.judge_id,
        "judge_params": params,
        "seed": seed,
        "max_comparisons": max_comparisons,
        "dataset": str(data.path),
        "stability_threshold": stability_threshold,
        "callback_grace": callback_grace,
    }
    batch_id = _create_batch(
        engine,
        assignment_id=assignment_id,
        course_id=course_id,
        batch_label=batch_label,
        max_comparisons=max_comparisons,
        refs=refs,
        anchor_texts=anchor_texts,
        data=data,
        run_params=run_params,
    )
    texts = {
        **anchor_texts,
        **dict(zip(data.students["essay_id"].astype(str), data.students["text"], strict=True)),
    }
    essay_ids = sorted(texts)
    deadline = time.monotonic() + completion_timeout if await_completion else math.inf
    per_wave = wave_size or max(1, len(essay_ids) // 2)
    pairing = PairingState()
    previous_theta = None
    reason = None
    wave = submitted = 0
    bar = _ProgressBar(max_comparisons, enabled=progress, callback=on_progress)
    with bar, ThreadPoolExecutor(max_workers=4, thread_name_prefix="cj-judge") as pool:
        while reason is None:
            wave += 1
            n_pairs = min(per_wave, max_comparisons - submitted)
            pairs = next_wave(
                essay_ids, n_pairs, pairing, seed=seed, wave=wave, anchors=anchor_texts
            )
            with session_scope(engine) as session:
                record_state_transition(
                    session, batch_id, CoreCJState.GENERATING_PAIRS, reason=f"wave {wave}"
                )
                sent = submit_pairs(
                    session, batch_id, pairs, wave=wave, judge_id=judge_impl.judge_id
                )
                record_state_transition(
                    session, batch_id, CoreCJState.WAITING_CALLBACKS,
                    reason=f"wave {wave}: {len(sent)} pairs submitted",
                )  # fmt: skip
            submitted += len(sent)
            results: queue.Queue[JudgeResult] = queue.Queue()

            def _run(request: PairRequest, out: queue.Queue = results) -> None:
                result = judge_impl.judge(request)
                if not result.lost:
                    out.put(result)

            for index, s in enumerate(sent):
                pool.submit(
                    _run,
                    PairRequest(
                        request_correlation_id=s.request_correlation_id,
                        essay_a_id=s.essay_a_id,
                        essay_b_id=s.essay_b_id,
                        essay_a_text=texts[s.essay_a_id],
                        essay_b_text=texts[s.essay_b_id],
                        prompt=data.prompt,
                        draw_key=f"{s.essay_a_id}|{s.essay_b_id}|{wave}|{index}",
                    ),
                )
            _await_wave(engine, batch_id, sent, results, deadline, callback_grace, bar,
                        judge_impl.judge_id)  # fmt: skip
            change = None
            if submitted >= max_comparisons:
                reason = "budget_exhausted"
            elif all_pairs_seen(essay_ids, pairing):
                reason = "all_pairs_compared"
            else:
                # The stability fit is only worth doing when no other reason ends the run.
                stable, previous_theta, change = _stable(
                    engine, batch_id, previous_theta, stability_threshold
                )
                if wave >= 3 and stable:
                    reason = "stable"
            log.info(
                "batch %s wave %d: %d pairs, %d/%d submitted; max |Δθ| since last wave %s",
                batch_id, wave, len(sent), submitted, max_comparisons,
                "n/a" if change is None else f"{change:.3f}",
            )  # fmt: skip
    if not finalize:
        return _result(engine, batch_id, wave, None, {}, None, pending_reason=reason)
    finalization = BatchFinalizer(engine).finalize_scoring(batch_id, completion_reason=reason)
    artefacts: dict[str, Path] = {}
    if run_dir is not None or output_dir is not None:
        from cjlib.provenance import new_run_dir
        from cjlib.workflow.artefacts import write_execute_artefacts

        if run_dir is not None:
            run_dir = Path(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            run_dir = new_run_dir(output_dir, batch_label, batch_id)
        artefacts = write_execute_artefacts(engine, batch_id, run_dir, dataset=data.path)
    return _result(engine, batch_id, wave, run_dir, artefacts, finalization)


class _ProgressBar:
    """A Rich progress bar over callbacks received, or nothing when disabled."""

    def __init__(self, total: int, *, enabled: bool, callback: Callable[[int, int], None] | None):
        self.total, self.enabled, self.callback, self.done = total, enabled, callback, 0
        self._progress = None

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("callbacks", total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)
        if self.callback is not None:
            self.callback(self.done, self.total)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def _await_wave(
    engine: Engine,
    batch_id: int,
    sent: list,
    results: queue.Queue,
    deadline: float,
    grace: float,
    bar: _ProgressBar,
    judge_id: str,
) -> None:
    pending = {s.request_correlation_id for s in sent}
    last_arrival = time.monotonic()
    while pending:
        now = time.monotonic()
        if now >= deadline:
            raise CompletionTimeout(
                f"batch {batch_id} did not complete within the completion timeout "
                f"({len(pending)} callbacks outstanding); it stays in WAITING_CALLBACKS — "
                f"see `cj batch inspect {batch_id}`"
            )
        if now - last_arrival >= grace:
            for rid in sorted(pending):
                record_callback(
                    engine, rid, winner=None, error_code="callback_lost", judge_id=judge_id
                )
                bar.advance()
            log.warning("batch %s: %d callbacks declared lost", batch_id, len(pending))
            return
        try:
            result = results.get(timeout=min(0.2, max(0.01, deadline - now)))
        except queue.Empty:
            continue
        outcome = record_callback(
            engine,
            result.request_correlation_id,
            winner=result.winner,
            confidence=result.confidence,
            justification=result.justification,
            error_code=result.error_code,
            judge_id=judge_id,
        )
        if outcome is CallbackOutcome.APPLIED:
            pending.discard(result.request_correlation_id)
            bar.advance()
            last_arrival = time.monotonic()


def _result(
    engine: Engine,
    batch_id: int,
    waves: int,
    run_dir: Path | None,
    artefacts: Mapping[str, Path],
    finalization: FinalizationResult | None,
    *,
    pending_reason: str | None = None,
) -> BatchRunResult:
    with session_scope(engine) as session:
        upload = session.get(CJBatchUpload, batch_id)
        state = session.get(CJBatchState, batch_id)
        anchors = session.scalar(
            select(func.count()).where(
                CJProcessedEssay.cj_batch_id == batch_id, CJProcessedEssay.is_anchor.is_(True)
            )
        )
        essays = session.scalar(
            select(func.count()).where(CJProcessedEssay.cj_batch_id == batch_id)
        )
        projections = session.scalar(
            select(func.count()).where(GradeProjection.cj_batch_id == batch_id)
        )
        return BatchRunResult(
            cj_batch_id=batch_id,
            bos_batch_id=upload.bos_batch_id,
            batch_label=upload.batch_label or "",
            assignment_id=upload.assignment_id or "",
            status=upload.status.value,
            state=state.state.value,
            completion_reason=(upload.processing_metadata or {}).get(
                "completion_reason", pending_reason
            ),
            total_comparisons=state.total_comparisons,
            submitted_comparisons=state.submitted_comparisons,
            completed_comparisons=state.completed_comparisons,
            failed_comparisons=state.failed_comparisons,
            anchor_count=int(anchors or 0),
            student_count=int(essays or 0) - int(anchors or 0),
            projection_count=int(projections or 0),
            waves=waves,
            run_dir=run_dir,
            artefacts=dict(artefacts),
            finalization=finalization,
        )
