"""Execute a CJ batch end to end: create it, judge pairs in waves, finalize, write artefacts.

This is the code under ``cj batch execute`` / ``cj batch resume`` and notebook
``02_execute_eng5_batch``. The waves themselves run in :class:`~cjlib.workflow.runner.BatchRunner`.

When to finalize (checked whenever no pair is left to judge, first match wins):

* ``budget_exhausted``: ``max_comparisons`` pairs have been created and their results are in;
* ``all_pairs_compared``: every pair of essays has been compared once (more waves would repeat);
* ``stable``: from the third wave on, every essay has at least
  :data:`~cjlib.workflow.runner.STABILITY_MIN_COMPARISONS` successful comparisons and no
  essay's θ moved more than ``stability_threshold`` logits since the previous check.

A result that has not arrived ``callback_grace`` seconds after the last one of its turn is
declared lost and recorded as a failed comparison (``error_code = callback_lost``); a judge
that raises gives a failed comparison with ``error_code = judge_exception`` and the error.
With ``await_completion`` the run must finish within ``completion_timeout`` seconds, or
:class:`CompletionTimeout` is raised and the batch stays in WAITING_CALLBACKS, to be continued
by :func:`resume_batch`.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from cjlib.datasets import Dataset, default_dataset_dir, load_dataset
from cjlib.db import session_scope
from cjlib.db.models import (
    FINAL_STATES,
    AnchorEssayReference,
    CJBatchState,
    CJBatchStatusEnum,
    CJBatchUpload,
    CJProcessedEssay,
    CoreCJState,
    GradeProjection,
    utc_now,
)
from cjlib.db.queries import instructions_for
from cjlib.db.repository import (
    create_batch_upload,
    create_processed_essays,
    fetch_content,
    store_contents,
)
from cjlib.errors import (
    ArtefactsNotWritten,
    BatchNotResumable,
    BatchRefused,
    NotFoundError,
    UsageError,
)
from cjlib.judges import Judge, make_judge
from cjlib.validation import (
    check_db_integer,
    check_positive_finite,
    check_text,
    check_writable_dir,
    column_length,
    integer_range,
)
from cjlib.workflow.finalizer import BatchFinalizer, FinalizationResult
from cjlib.workflow.runner import STABILITY_THRESHOLD, BatchRunner, RunOptions

log = logging.getLogger(__name__)

#: Parameters of the simulated judge unless overridden.
DEFAULT_JUDGE_PARAMS: Mapping[str, float] = {
    "discrimination": 1.0,
    "position_bias": 0.1,
    "error_rate": 0.01,
    "lost_rate": 0.0,
}
#: Requests in flight at once, per judge, unless ``concurrency`` says otherwise.
DEFAULT_CONCURRENCY = {"simulated": 1, "mock": 1}
FALLBACK_CONCURRENCY = 8


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


def check_batch_options(
    *,
    assignment_id: str,
    course_id: str,
    batch_label: str,
    max_comparisons: int,
    seed: int,
    completion_timeout: float = 600.0,
    callback_grace: float = 5.0,
    output_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    names: Mapping[str, str] | None = None,
) -> None:
    """Refuse, before any write, what the database or the file system would refuse later.

    :func:`execute_batch` calls it first; ``cj pipeline`` calls it before any kernel starts.
    Limits are the strictest of SQLite and PostgreSQL (:mod:`cjlib.validation`), so both
    refuse the same values with the same one-line message: ids and the label must be
    non-blank, without NUL, and fit their columns (``course_id`` also fits ``course_code``);
    ``max_comparisons`` between 2 and the 32-bit ``total_budget`` column's maximum; ``seed``
    from 0 to 2**63 - 1; ``completion_timeout`` and ``callback_grace`` finite and > 0;
    ``run_dir`` or else ``output_dir`` a folder this process can write (nothing is created).

    Parameters
    ----------
    names : mapping, optional
        How each option is named in messages (default the ``cj batch execute`` option, e.g.
        ``{"max_comparisons": "-p max_comparisons"}``).

    Raises
    ------
    UsageError
        The first value that cannot work (exit 2).
    BatchRefused
        ``max_comparisons`` < 2 (exit 2).
    """
    shown = {
        "assignment_id": "--assignment-id",
        "course_id": "--course-id",
        "batch_label": "--batch-label",
        "max_comparisons": "--max-comparisons",
        "seed": "--seed",
        **(names or {}),
    }
    check_text(shown["assignment_id"], assignment_id,
               column_length(CJBatchUpload.assignment_id), required=True)  # fmt: skip
    # The course id is stored twice: as course_id and (shorter) as course_code.
    course_max = min(
        column_length(CJBatchUpload.course_id), column_length(CJBatchUpload.course_code)
    )
    check_text(shown["course_id"], course_id, course_max, required=True)
    check_text(shown["batch_label"], batch_label, column_length(CJBatchUpload.batch_label),
               required=True)  # fmt: skip
    is_int = isinstance(max_comparisons, int) and not isinstance(max_comparisons, bool)
    if is_int and max_comparisons < 2:
        raise BatchRefused(
            f"{shown['max_comparisons']} must be at least 2 (got {max_comparisons}): "
            "one comparison cannot place any essay relative to another"
        )
    check_db_integer(
        shown["max_comparisons"], max_comparisons, CJBatchState.total_budget, minimum=2
    )
    check_db_integer(shown["seed"], seed, minimum=0)
    check_positive_finite("--completion-timeout", completion_timeout)
    check_positive_finite("callback_grace", callback_grace)
    if run_dir is not None:
        check_writable_dir(run_dir, "run_dir")
    elif output_dir is not None:
        check_writable_dir(output_dir, "--output-dir")


def _validate_and_load(
    engine: Engine,
    assignment_id: str,
    max_comparisons: int,
    dataset: str | Path | None,
) -> tuple[list[AnchorEssayReference], dict[str, str], Dataset]:
    with session_scope(engine) as session:
        instr = instructions_for(session, assignment_id)
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
    data: Dataset,
    run_params: Mapping[str, Any],
) -> int:
    """Create the upload, its state, the student texts and every processed essay, at once."""
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
        texts = students["text"].tolist()
        keys = store_contents(session, texts)
        essays = [
            {
                "els_essay_id": str(row.essay_id),
                "text_storage_id": key,
                "assessment_input_text": row.text,
                "processing_metadata": {"is_anchor": False, "source_file": str(row.file)},
            }
            for row, key in zip(students.itertuples(index=False), keys, strict=True)
        ]
        essays += [
            {
                "els_essay_id": ref.anchor_label,
                "text_storage_id": ref.text_storage_id,
                "assessment_input_text": anchor_texts[ref.anchor_label],
                "processing_metadata": {
                    "is_anchor": True,
                    "anchor_label": ref.anchor_label,
                    "anchor_grade": ref.grade,
                    "grade_scale": ref.grade_scale,
                },
            }
            for ref in refs
        ]
        create_processed_essays(session, upload.id, essays)
        upload.status = CJBatchStatusEnum.PERFORMING_COMPARISONS
        return upload.id


def _abilities(data: Dataset) -> dict[str, float] | None:
    if data.truth is None:
        return None
    return dict(zip(data.truth["essay_id"].astype(str), data.truth["ability"], strict=True))


def _build_judge(name: str, data: Dataset | None, seed: int, params: Mapping[str, Any]) -> Judge:
    return make_judge(name, abilities=_abilities(data) if data else None, seed=seed, **params)


def _deadline(await_completion: bool, completion_timeout: float) -> float:
    if not await_completion:
        return math.inf
    return time.monotonic() + completion_timeout


def _write_artefacts(
    engine: Engine,
    batch_id: int,
    *,
    batch_label: str,
    output_dir: str | Path | None,
    run_dir: str | Path | None,
    dataset: str | Path | None,
    projections_csv: bool,
) -> tuple[Path | None, dict[str, Path]]:
    if run_dir is None and output_dir is None:
        return None, {}
    from cjlib.provenance import new_run_dir
    from cjlib.workflow.artefacts import write_execute_artefacts

    if run_dir is not None:
        folder = Path(run_dir)
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = new_run_dir(output_dir, batch_label, batch_id)
    written = write_execute_artefacts(
        engine, batch_id, folder, dataset=dataset, projections_csv=projections_csv
    )
    return folder, written


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
    concurrency: int | None = None,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    finalize: bool = True,
    projections_csv: bool = True,
) -> BatchRunResult:
    """Run one CJ batch for ``assignment_id`` from creation to completed projections.

    Parameters
    ----------
    engine : Engine
        A migrated database (see :func:`cjlib.db.get_engine`).
    assignment_id, course_id : str
        The assignment whose instructions and anchors the batch uses, and its course.
    batch_label : str
        A human label for the batch (not unique).
    max_comparisons : int
        Budget: at most this many pairs are created (≥ 2).
    judge : str
        ``simulated`` (alias ``mock``): decides from the data set's latent abilities.
    seed : int
        Seed of the judge and the pairing.
    dataset : path, optional
        Folder with the student essays (default: the packaged ENG5 sample data set).
    await_completion, completion_timeout
        Enforce a deadline of ``completion_timeout`` seconds for the whole run; on expiry raise
        :class:`CompletionTimeout` (the batch stays in WAITING_CALLBACKS, resumable).
    callback_grace : float
        Seconds a lost result is waited for before it is recorded as ``callback_lost``.
    output_dir : path, optional
        Parent of the fresh run folder for artefacts; None writes no artefacts.
    run_dir : path, optional
        Write the artefacts into this folder instead (created if missing; the pipeline uses
        it so one run folder holds the batch's artefacts and the executed notebooks).
    judge_params : mapping, optional
        Overrides of :data:`DEFAULT_JUDGE_PARAMS` (``discrimination``, ``position_bias``,
        ``error_rate``, ``lost_rate``).
    wave_size : int, optional
        Pairs per wave; default half the number of essays.
    stability_threshold : float
        Largest θ change between checks that counts as stable; 0 turns the rule off.
    concurrency : int, optional
        Judge requests in flight at once; default per judge (:data:`DEFAULT_CONCURRENCY`).
    progress : bool
        Show a Rich progress bar of results recorded.
    on_progress : callable, optional
        Called with (results recorded, budget) after each bulk write.
    finalize : bool
        False stops after the last wave, leaving the batch in WAITING_CALLBACKS (for
        diagnostics and for finalizing elsewhere with :class:`BatchFinalizer`).
    projections_csv : bool
        Write ``grade_projections.csv`` with the artefacts; the pipeline passes False because
        its notebook 03 snapshot writes it.

    Raises
    ------
    BatchRefused
        Before anything is written: no instructions or anchors, budget < 2, < 2 students.
    CompletionTimeout
        The deadline passed; the batch stays in WAITING_CALLBACKS.
    FinalizationError
        Finalization failed; the batch is FAILED with the reason.
    """
    check_batch_options(
        assignment_id=assignment_id, course_id=course_id, batch_label=batch_label,
        max_comparisons=max_comparisons, seed=seed, completion_timeout=completion_timeout,
        callback_grace=callback_grace, output_dir=output_dir, run_dir=run_dir,
    )  # fmt: skip
    refs, anchor_texts, data = _validate_and_load(engine, assignment_id, max_comparisons, dataset)
    params = {**DEFAULT_JUDGE_PARAMS, **(judge_params or {})}
    judge_impl = _build_judge(judge, data, seed, params)
    concurrency = concurrency or DEFAULT_CONCURRENCY.get(judge, FALLBACK_CONCURRENCY)
    run_params = {
        "judge": judge,
        "judge_id": judge_impl.judge_id,
        "judge_params": params,
        "seed": seed,
        "max_comparisons": max_comparisons,
        "dataset": str(data.path),
        "stability_threshold": stability_threshold,
        "callback_grace": callback_grace,
        "wave_size": wave_size,
        "concurrency": concurrency,
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
    options = RunOptions(
        max_comparisons=max_comparisons,
        seed=seed,
        wave_size=wave_size,
        stability_threshold=stability_threshold,
        callback_grace=callback_grace,
        deadline=_deadline(await_completion, completion_timeout),
        concurrency=concurrency,
    )
    with _ProgressBar(max_comparisons, enabled=progress, callback=on_progress) as bar:
        outcome = BatchRunner(
            engine, batch_id, judge_impl, texts=texts, anchors=anchor_texts, options=options,
            prompt=data.prompt, on_progress=bar.update,
        ).run()  # fmt: skip
    if not finalize:
        return _result(engine, batch_id, outcome.waves, None, {}, None,
                       pending_reason=outcome.reason)  # fmt: skip
    finalization = BatchFinalizer(engine).finalize_scoring(
        batch_id, completion_reason=outcome.reason
    )
    try:
        folder, artefacts = _write_artefacts(
            engine, batch_id, batch_label=batch_label, output_dir=output_dir, run_dir=run_dir,
            dataset=data.path, projections_csv=projections_csv,
        )  # fmt: skip
    except OSError as err:
        # The batch is committed and final: running it again would make a second batch.
        raise _artefacts_not_written(batch_id, run_dir or output_dir, err) from err
    return _result(engine, batch_id, outcome.waves, folder, artefacts, finalization)


def _artefacts_not_written(
    batch_id: int, target: str | Path | None, err: OSError
) -> ArtefactsNotWritten:
    where = f" to {err.filename}" if err.filename else (f" under {target}" if target else "")
    reason = err.strerror or str(err)
    return ArtefactsNotWritten(
        f"batch {batch_id} is complete in the database, but its artefacts could not be "
        f"written{where}: {reason}; write them again with "
        f"`cj batch artefacts {batch_id} --output-dir DIR` (do not run the batch again)",
        cj_batch_id=batch_id,
    )


def _existing_run_dir(output_dir: Path, cj_batch_id: int) -> Path | None:
    """The newest run folder under ``output_dir`` made for this batch, if any."""
    suffix = re.compile(rf"_batch{cj_batch_id}(?:_\d+)?$")
    found = [p for p in output_dir.glob(f"*_batch{cj_batch_id}*") if p.is_dir()]
    found = [p for p in found if suffix.search(p.name)]
    return max(found, key=lambda p: p.name) if found else None


def write_batch_artefacts(
    engine: Engine,
    cj_batch_id: int,
    *,
    output_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
) -> tuple[Path, dict[str, Path]]:
    """(Re)write a stored batch's execute artefacts; reads the database only.

    What ``cj batch artefacts`` runs after :class:`~cjlib.errors.ArtefactsNotWritten`:
    the request envelope, ``grade_projections.csv`` and ``assessment_run.execute.json``
    (:func:`cjlib.workflow.artefacts.write_execute_artefacts`). Idempotent: with ``run_dir``
    the files in that folder are replaced; with ``output_dir`` the batch's newest run folder
    there (``*_batch<ID>``) is reused, and one is created only when there is none.

    Parameters
    ----------
    engine : Engine
    cj_batch_id : int
    output_dir, run_dir : path
        Exactly one: the parent of the batch's run folder, or the folder itself.

    Returns
    -------
    (Path, dict)
        The run folder and the files written by name.

    Raises
    ------
    UsageError
        Neither or both folders given, or the folder is not a writable folder.
    NotFoundError
        No batch has this id.
    ArtefactsNotWritten
        Writing failed all the same (disk full, permissions changed meanwhile).
    """
    from cjlib.provenance import new_run_dir
    from cjlib.workflow.artefacts import write_execute_artefacts

    if (output_dir is None) == (run_dir is None):
        raise UsageError("give either --output-dir or --run-dir (exactly one)")
    target = check_writable_dir(run_dir if run_dir is not None else output_dir,
                                "--run-dir" if run_dir is not None else "--output-dir")  # fmt: skip
    low, high = integer_range(CJBatchUpload.id)
    if not low <= cj_batch_id <= high:
        raise NotFoundError(f"no CJ batch with id {cj_batch_id}")
    with session_scope(engine) as session:
        upload = session.get(CJBatchUpload, cj_batch_id)
        if upload is None:
            raise NotFoundError(f"no CJ batch with id {cj_batch_id}; list batches with `cj health`")
        label = upload.batch_label or "batch"
        dataset = ((upload.processing_metadata or {}).get("run") or {}).get("dataset")
    try:
        if run_dir is not None:
            folder = target
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = _existing_run_dir(target, cj_batch_id) or new_run_dir(
                target, label, cj_batch_id
            )
        written = write_execute_artefacts(engine, cj_batch_id, folder, dataset=dataset)
    except OSError as err:
        raise _artefacts_not_written(cj_batch_id, target, err) from err
    return folder, written


#: States a crash can leave a batch in, from which :func:`resume_batch` continues it.
RESUMABLE_STATES = (
    CoreCJState.INITIALIZING,
    CoreCJState.GENERATING_PAIRS,
    CoreCJState.WAITING_CALLBACKS,
)


@dataclass(frozen=True)
class _Resumable:
    upload: CJBatchUpload
    state: CoreCJState
    texts: dict[str, str]
    anchors: list[str]
    prompt: str | None


def _load_resumable(engine: Engine, batch_id: int) -> _Resumable:
    with session_scope(engine) as session:
        upload = session.get(CJBatchUpload, batch_id)
        if upload is None:
            raise NotFoundError(f"no CJ batch with id {batch_id}; list batches with `cj health`")
        state = session.get(CJBatchState, batch_id)
        rows = session.execute(
            select(
                CJProcessedEssay.els_essay_id,
                CJProcessedEssay.assessment_input_text,
                CJProcessedEssay.is_anchor,
            ).where(CJProcessedEssay.cj_batch_id == batch_id)
        ).all()
        instructions = instructions_for(session, upload.assignment_id)
        return _Resumable(
            upload=upload,
            state=state.state if state is not None else CoreCJState.FAILED,
            texts={essay_id: text for essay_id, text, _ in rows},
            anchors=[essay_id for essay_id, _, is_anchor in rows if is_anchor],
            prompt=instructions.student_prompt_text if instructions else None,
        )


def _resume_judge(run: Mapping[str, Any], judge: str | None) -> tuple[Judge, str]:
    name = judge or run.get("judge") or "simulated"
    data = None
    if run.get("dataset"):
        folder = Path(run["dataset"])
        if not folder.is_dir():
            raise UsageError(
                f"the batch's data set {folder} is gone, and the {name} judge needs its "
                "truth.csv; restore the folder or resume with another --judge"
            )
        data = load_dataset(folder)
    params = dict(run.get("judge_params") or DEFAULT_JUDGE_PARAMS)
    return _build_judge(name, data, int(run.get("seed") or 0), params), name


def resume_batch(
    engine: Engine,
    cj_batch_id: int,
    *,
    judge: str | None = None,
    concurrency: int | None = None,
    await_completion: bool = True,
    completion_timeout: float = 600.0,
    output_dir: str | Path | None = None,
    stale_after: float | None = None,
    finalize_now: bool = False,
) -> BatchRunResult:
    """Continue a batch a crash left in INITIALIZING, GENERATING_PAIRS or WAITING_CALLBACKS.

    Pairs with a result are never sent again; pairs sent without a result by a worker that is
    gone are sent again with the same correlation id; the waves continue to the budget or a
    stopping rule, then the batch is finalized. Several processes may resume one batch at
    once on PostgreSQL: they share the remaining pairs and exactly one finalizes.

    Parameters
    ----------
    judge : str, optional
        Judge name; default the one the batch recorded.
    concurrency : int, optional
        Judge requests in flight; default the batch's.
    await_completion, completion_timeout
        As for :func:`execute_batch`.
    output_dir : path, optional
        Write the artefacts into a fresh run folder under it.
    stale_after : float, optional
        Seconds of silence after which another worker counts as dead (default 30).
    finalize_now : bool
        Send nothing more: finalize what was decided, with completion reason
        ``interrupted``.

    Returns
    -------
    BatchRunResult
        ``finalization.already_final`` is True when the batch was already final.

    Raises
    ------
    NotFoundError
        No such batch.
    BatchNotResumable
        The batch FAILED or was CANCELLED (the message says why).
    """
    batch = _load_resumable(engine, cj_batch_id)
    upload = batch.upload
    if batch.state in FINAL_STATES:
        if batch.state is CoreCJState.COMPLETED:
            final = BatchFinalizer(engine).finalize_scoring(cj_batch_id)
            return _result(engine, cj_batch_id, 0, None, {}, final)
        why = (upload.processing_metadata or {}).get("failure_reason", "no reason recorded")
        raise BatchNotResumable(
            f"batch {cj_batch_id} is {batch.state.value} and cannot be resumed: {why}"
        )
    run = dict((upload.processing_metadata or {}).get("run") or {})
    waves = 0
    reason = "interrupted"
    if not finalize_now:
        judge_impl, name = _resume_judge(run, judge)
        options = RunOptions(
            max_comparisons=int(run.get("max_comparisons") or 0),
            seed=int(run.get("seed") or 0),
            wave_size=run.get("wave_size"),
            stability_threshold=float(run.get("stability_threshold", STABILITY_THRESHOLD)),
            callback_grace=float(run.get("callback_grace", 5.0)),
            deadline=_deadline(await_completion, completion_timeout),
            concurrency=concurrency
            or int(run.get("concurrency") or DEFAULT_CONCURRENCY.get(name, FALLBACK_CONCURRENCY)),
            **({"stale_after": stale_after} if stale_after is not None else {}),
        )
        _record_resume(engine, cj_batch_id)
        outcome = BatchRunner(
            engine, cj_batch_id, judge_impl, texts=batch.texts, anchors=batch.anchors,
            options=options, prompt=batch.prompt,
        ).run()  # fmt: skip
        waves = outcome.waves
        if outcome.already_final:
            final = BatchFinalizer(engine).finalize_scoring(cj_batch_id)
            return _result(engine, cj_batch_id, waves, None, {}, final)
        reason = outcome.reason
    finalization = BatchFinalizer(engine).finalize_scoring(cj_batch_id, completion_reason=reason)
    folder, artefacts = _write_artefacts(
        engine, cj_batch_id, batch_label=upload.batch_label or "batch", output_dir=output_dir,
        run_dir=None, dataset=run.get("dataset"), projections_csv=True,
    )  # fmt: skip
    return _result(engine, cj_batch_id, waves, folder, artefacts, finalization)


def _record_resume(engine: Engine, batch_id: int) -> None:
    """Note the resume in the upload's metadata (the report lists a batch's resumes)."""
    with session_scope(engine) as session:
        upload = session.get(CJBatchUpload, batch_id, with_for_update=True)
        meta = dict(upload.processing_metadata or {})
        meta["resumed_at"] = [*meta.get("resumed_at", []), utc_now().isoformat()]
        upload.processing_metadata = meta


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

    def update(self, done: int, total: int) -> None:
        self.done = done
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)
        if self.callback is not None:
            self.callback(self.done, total)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


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
