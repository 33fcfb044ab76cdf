"""Execute a CJ batch end to end: create it, judge pairs in waves, finalize, write artefacts.

This is the code under ``cj batch execute`` / ``cj batch resume`` and notebook
``02_execute_eng5_batch``. The waves themselves run in :class:`~cjlib.workflow.runner.BatchRunner`.

When to finalize (checked whenever no pair is left to judge, first match wins):

* ``budget_exhausted``: ``max_comparisons`` pairs have been created and their results are in;
* ``all_pairs_compared``: every pair of essays has been compared once (more waves would repeat);
* ``target_grade_certainty`` (with ``target_grade_certainty=P``): every student's most
  probable grade has probability ≥ P in a projection of the decisions so far;
* ``target_reliability`` (with ``target_reliability=R``): a reliability the pairing design
  cannot inflate reaches R — split-half under ``balanced`` pairing, the SSR adjusted by the
  null baseline under ``adaptive`` / ``boundary`` (:func:`cjlib.design.honest_reliability`);
* ``stable``: from the third wave on, every essay has at least
  :data:`~cjlib.workflow.runner.STABILITY_MIN_COMPARISONS` successful comparisons and no
  essay's θ moved more than ``stability_threshold`` logits since the previous check.

Waves are paired by the strategy named ``pairing`` (:mod:`cjlib.pairing`); its
``record()`` and the stopping targets are stored in ``processing_metadata["run"]``, so
:func:`resume_batch` continues with the same ones, and the rule that fired with what each
rule measured in ``processing_metadata["stopping"]``.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from cjlib.datasets import ENG5_SCALE_NAME, Dataset, default_dataset_dir, load_dataset
from cjlib.db import session_scope
from cjlib.db.judge_calls import judge_call_summary, load_judge_calls, load_replay
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
from cjlib.db.queries import (
    anchor_grade,
    anchor_references,
    grade_scale_for,
    instructions_for,
)
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
from cjlib.judges import Judge, PairRequest, make_judge
from cjlib.pairing import PairingStrategy, make_strategy
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
    judge_calls: Mapping[str, Any] | None = None

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
            **({"judge_calls": dict(self.judge_calls)} if self.judge_calls else {}),
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
    from 0 to 2**63 - 1; ``completion_timeout`` finite and > 0, ``callback_grace`` finite and ≥ 0;
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
    # 0 is a real choice here: record a lost result as failed without waiting.
    if not (isinstance(callback_grace, int | float) and 0 <= callback_grace < math.inf):
        raise UsageError(f"callback_grace must be a finite number ≥ 0; got {callback_grace!r}")
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


def _pairing_and_stopping(
    pairing: str, pairing_params: Mapping[str, Any] | None, targets: Mapping[str, float | None]
) -> tuple[PairingStrategy, dict[str, float]]:
    """The strategy and the stopping targets, checked before anything is written."""
    from cjlib.stopping import target_grade_certainty, target_reliability

    strategy = make_strategy(str(pairing).strip().lower(), **dict(pairing_params or {}))
    chosen = {name: value for name, value in targets.items() if value is not None}
    if "target_grade_certainty" in chosen:
        target_grade_certainty(chosen["target_grade_certainty"])
    if "target_reliability" in chosen:
        target_reliability(chosen["target_reliability"], float)
    return strategy, {k: float(v) for k, v in chosen.items()}


def _abilities(data: Dataset) -> dict[str, float] | None:
    if data.truth is None:
        return None
    return dict(zip(data.truth["essay_id"].astype(str), data.truth["ability"], strict=True))


def _build_judge(name: str, data: Dataset | None, seed: int, params: Mapping[str, Any]) -> Judge:
    return make_judge(name, abilities=_abilities(data) if data else None, seed=seed, **params)


# -- LLM and replay judges -------------------------------------------------------------------

#: LLMConfig fields recorded with a batch (and given back to the judge on resume). The API key
#: is not a field: it is read from CJ_LLM_API_KEY by every process that builds the judge.
_LLM_RECORDED = (
    "temperature",
    "max_tokens",
    "timeout_s",
    "max_retries",
    "backoff_base_s",
    "backoff_max_s",
    "max_retry_after_s",
    "requests_per_minute",
    "concurrency",
    "prompt_price_per_1k",
    "completion_price_per_1k",
    "price_file",
    "use_response_format",
)


def _judge_name(name: str) -> str:
    return name.strip().lower()


def _build_llm_judge(llm: Mapping[str, Any], seed: int, grade_scale: Any) -> Judge:
    from cjlib.llm import make_llm_judge

    settings = {k: v for k, v in llm.items() if v is not None}
    return make_llm_judge(seed=seed, grade_scale=grade_scale, **settings)


def _llm_record(judge: Any, prompt_template: str | Path | None) -> dict[str, Any]:
    """What a batch records about its LLM judge: enough to rebuild it, never the key."""
    config = judge.config
    price = judge.price
    return {
        "base_url": config.base_url,
        "model": config.model,
        "prompt_template": None if prompt_template is None else str(Path(prompt_template)),
        "template_sha256": judge.template.sha256,
        "grade_scale": judge.grade_scale.name,
        "settings": {name: getattr(config, name) for name in _LLM_RECORDED},
        "price_per_1k": None
        if price is None
        else {"prompt": price.prompt_per_1k, "completion": price.completion_per_1k},
    }


def _rebuild_llm_judge(
    record: Mapping[str, Any], seed: int, overrides: Mapping[str, Any] | None
) -> Judge:
    """The LLM judge a batch recorded, with ``overrides``; the template must be unchanged."""
    settings = {
        "base_url": record.get("base_url"),
        "model": record.get("model"),
        "prompt_template": record.get("prompt_template"),
        **dict(record.get("settings") or {}),
        **{k: v for k, v in (overrides or {}).items() if v is not None},
    }
    judge = _build_llm_judge(settings, seed, record.get("grade_scale") or ENG5_SCALE_NAME)
    recorded = record.get("template_sha256")
    if recorded and judge.template.sha256 != recorded:
        raise UsageError(
            f"the prompt template {settings['prompt_template'] or '(packaged default)'} is not "
            f"the one the batch started with (SHA-256 {judge.template.sha256[:12]}… ≠ "
            f"{recorded[:12]}…); restore it or pass --prompt-template with the original file"
        )
    return judge


def _seed_costs(engine: Engine, batch_id: int, judge: Any) -> None:
    """Add a batch's stored calls to the judge's cost tracker (a resumed run's cost cap)."""
    costs = getattr(judge, "costs", None)
    if costs is None:
        return
    with session_scope(engine) as session:
        for call in load_judge_calls(session, batch_id):
            costs.add_call(call)


def _load_replay_judge(engine: Engine, replay_from: int, consumed_by: int | None = None) -> Judge:
    """A replay judge over batch ``replay_from``'s calls.

    ``consumed_by``: a replaying batch being resumed; the source calls its stored calls already
    used are marked used, so repeated ordered pairs keep their order.
    """

    with session_scope(engine) as session:
        judge = load_replay(session, int(replay_from), judge_id=f"replay:{int(replay_from)}")
        done = load_judge_calls(session, consumed_by) if consumed_by is not None else []
    for call in done:
        judge._find(PairRequest("", call.essay_a_id, call.essay_b_id, "", ""))
    return judge


def _source_run(engine: Engine, batch_id: int) -> dict[str, Any]:
    with session_scope(engine) as session:
        upload = session.get(CJBatchUpload, int(batch_id))
        if upload is None:
            raise NotFoundError(
                f"no CJ batch with id {batch_id} to replay; pass the id of a batch run with "
                "--judge llm"
            )
        return dict((upload.processing_metadata or {}).get("run") or {})


def _check_llm_options(
    name: str,
    judge: Any,
    *,
    max_cost_usd: float | None,
    replay_from: int | None,
) -> None:
    if replay_from is not None and name != "replay":
        raise UsageError("--replay-from applies to --judge replay only")
    if name == "replay" and replay_from is None:
        raise UsageError("--judge replay needs --replay-from CJ_BATCH_ID (the batch to replay)")
    if max_cost_usd is None:
        return
    if not (isinstance(max_cost_usd, int | float) and math.isfinite(max_cost_usd)) or (
        max_cost_usd <= 0
    ):
        raise UsageError(f"--max-cost-usd must be a number > 0, not {max_cost_usd!r}")
    if getattr(judge, "costs", None) is None:
        raise UsageError("--max-cost-usd applies to --judge llm only")
    if getattr(judge, "price", None) is None:
        raise UsageError(
            f"--max-cost-usd needs prices, and model {judge.config.model!r} is not in the price "
            "table; pass --llm-price-prompt and --llm-price-completion (USD per 1k tokens)"
        )


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
    pairing: str = "balanced",
    pairing_params: Mapping[str, Any] | None = None,
    target_reliability: float | None = None,
    target_grade_certainty: float | None = None,
    llm: Mapping[str, Any] | None = None,
    max_cost_usd: float | None = None,
    both_orders: bool | None = None,
    replay_from: int | None = None,
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
        ``simulated`` (alias ``mock``): decides from the data set's latent abilities; ``llm``:
        an OpenAI-compatible server (settings in ``llm``, key from ``CJ_LLM_API_KEY``);
        ``replay``: the stored answers of batch ``replay_from``, no server.
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
    pairing : str
        Pairing strategy, a name in :data:`cjlib.pairing.PAIRING_STRATEGIES` (``balanced``,
        ``adaptive``, ``boundary``).
    pairing_params : mapping, optional
        The strategy's parameters (e.g. ``{"min_comparisons": 3}``).
    target_reliability : float, optional
        Stop once the reliability the design cannot inflate reaches it (in (0, 1]).
    target_grade_certainty : float, optional
        Stop once every student's most probable grade has at least this probability.
    llm : mapping, optional
        For ``judge="llm"``: ``base_url``, ``model`` (default ``CJ_LLM_BASE_URL``/
        ``CJ_LLM_MODEL``), ``prompt_template`` (a file; default the packaged ENG5 one) and
        further :class:`~cjlib.llm.settings.LLMConfig` fields (``temperature``,
        ``concurrency``, ``requests_per_minute``, ``prompt_price_per_1k``,
        ``completion_price_per_1k`` …). Recorded with the batch (never the key) so that
        :func:`resume_batch` rebuilds the same judge.
    max_cost_usd : float, optional
        LLM judge only: stop submitting pairs when the cost estimate would pass this; the
        batch finalizes what was decided with completion reason ``max_cost``.
    both_orders : bool, optional
        Send every pair as AB and BA, each its own comparison (both count against the
        budget). Default False; for ``replay``, the replayed batch's setting.
    replay_from : int, optional
        For ``judge="replay"``: the batch whose stored LLM answers decide this one.

    Raises
    ------
    BatchRefused
        Before anything is written: no instructions or anchors, budget < 2, < 2 students.
    UsageError
        Before anything is written: an unknown pairing strategy or parameter, a target
        outside (0, 1].
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
    strategy, targets = _pairing_and_stopping(
        pairing, pairing_params,
        {"target_reliability": target_reliability,
         "target_grade_certainty": target_grade_certainty},
    )  # fmt: skip
    refs, anchor_texts, data = _validate_and_load(engine, assignment_id, max_comparisons, dataset)
    name = _judge_name(judge)
    params = {**DEFAULT_JUDGE_PARAMS, **(judge_params or {})}
    llm_record = None
    if name == "llm":
        params = {}
        judge_impl = _build_llm_judge(llm or {}, seed, data.grade_scale)
        llm_record = _llm_record(judge_impl, (llm or {}).get("prompt_template"))
        concurrency = concurrency or judge_impl.config.concurrency
    elif name == "replay":
        params = {}
        if replay_from is None:
            raise UsageError("--judge replay needs --replay-from CJ_BATCH_ID (the batch to replay)")
        source = _source_run(engine, replay_from)
        judge_impl = _load_replay_judge(engine, replay_from)
        if both_orders is None:
            both_orders = bool(source.get("both_orders"))
    else:
        if llm:
            raise UsageError("LLM settings (--llm-…, --prompt-template) apply to --judge llm only")
        judge_impl = _build_judge(judge, data, seed, params)
    _check_llm_options(name, judge_impl, max_cost_usd=max_cost_usd, replay_from=replay_from)
    both_orders = bool(both_orders)
    concurrency = concurrency or DEFAULT_CONCURRENCY.get(name, FALLBACK_CONCURRENCY)
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
        "pairing": strategy.record(),
        "stopping": targets,
        "both_orders": both_orders,
        "max_cost_usd": max_cost_usd,
        "replay_from": replay_from,
        "llm": llm_record,
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
        pairing=strategy,
        **targets,
        max_cost_usd=max_cost_usd,
        both_orders=both_orders,
    )
    with _ProgressBar(max_comparisons, enabled=progress, callback=on_progress) as bar:
        outcome = BatchRunner(
            engine, batch_id, judge_impl, texts=texts, anchors=anchor_texts, options=options,
            prompt=data.prompt, on_progress=bar.update,
            anchor_grades={ref.anchor_label: ref.grade for ref in refs},
            grade_scale=refs[0].grade_scale,
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
    anchor_grades: dict[str, str]
    grade_scale: str | None


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
                CJProcessedEssay.processing_metadata,
            ).where(CJProcessedEssay.cj_batch_id == batch_id)
        ).all()
        instructions = instructions_for(session, upload.assignment_id)
        scale = grade_scale_for(session, upload.assignment_id, upload.processing_metadata)
        references = anchor_references(session, upload.assignment_id, scale)
        grades = {
            essay_id: anchor_grade(essay_id, True, meta, references)
            for essay_id, _, is_anchor, meta in rows
            if is_anchor
        }
        return _Resumable(
            upload=upload,
            state=state.state if state is not None else CoreCJState.FAILED,
            texts={essay_id: text for essay_id, text, _, _ in rows},
            anchors=[essay_id for essay_id, _, is_anchor, _ in rows if is_anchor],
            prompt=instructions.student_prompt_text if instructions else None,
            anchor_grades={k: v for k, v in grades.items() if v is not None},
            grade_scale=scale,
        )


def _resume_judge(
    engine: Engine,
    batch_id: int,
    run: Mapping[str, Any],
    judge: str | None,
    llm: Mapping[str, Any] | None = None,
) -> tuple[Judge, str]:
    name = _judge_name(judge or run.get("judge") or "simulated")
    seed = int(run.get("seed") or 0)
    if name == "llm":
        judge_impl = _rebuild_llm_judge(run.get("llm") or {}, seed, llm)
        _seed_costs(engine, batch_id, judge_impl)
        return judge_impl, name
    if name == "replay":
        if run.get("replay_from") is None:
            raise UsageError(f"batch {batch_id} recorded no batch to replay; resume with --judge")
        return _load_replay_judge(engine, run["replay_from"], consumed_by=batch_id), name
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
    llm: Mapping[str, Any] | None = None,
) -> BatchRunResult:
    """Continue a batch a crash left in INITIALIZING, GENERATING_PAIRS or WAITING_CALLBACKS.

    Pairs with a result are never sent again; pairs sent without a result by a worker that is
    gone are sent again with the same correlation id; the waves continue to the budget or a
    stopping rule, then the batch is finalized. The pairing strategy and stopping targets are
    rebuilt from the batch's ``processing_metadata["run"]`` (a batch recorded before they
    existed continues ``balanced``, without targets). Several processes may resume one batch at
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
    llm : mapping, optional
        Overrides of the LLM settings the batch recorded (e.g. another ``base_url``); an LLM
        batch is otherwise resumed with its recorded server, model, template (checked by its
        SHA-256), sampling settings and prices, and the key from ``CJ_LLM_API_KEY``. The cost
        cap counts the calls already stored.

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
        judge_impl, name = _resume_judge(engine, cj_batch_id, run, judge, llm)
        recorded = run.get("pairing") or {"name": "balanced", "params": {}}
        strategy, targets = _pairing_and_stopping(
            recorded.get("name", "balanced"), recorded.get("params"), run.get("stopping") or {}
        )
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
            pairing=strategy,
            **targets,
            max_cost_usd=run.get("max_cost_usd") if name == "llm" else None,
            both_orders=bool(run.get("both_orders")),
        )
        _record_resume(engine, cj_batch_id)
        outcome = BatchRunner(
            engine, cj_batch_id, judge_impl, texts=batch.texts, anchors=batch.anchors,
            options=options, prompt=batch.prompt, anchor_grades=batch.anchor_grades,
            grade_scale=batch.grade_scale,
        ).run()  # fmt: skip
        waves = outcome.waves
        if outcome.already_final:
            final = BatchFinalizer(engine).finalize_scoring(cj_batch_id)
            return _result(engine, cj_batch_id, waves, None, {}, final)
        reason = outcome.reason
    finalization = BatchFinalizer(engine).finalize_scoring(cj_batch_id, completion_reason=reason)
    try:
        folder, artefacts = _write_artefacts(
            engine, cj_batch_id, batch_label=upload.batch_label or "batch",
            output_dir=output_dir, run_dir=None, dataset=run.get("dataset"),
            projections_csv=True,
        )  # fmt: skip
    except OSError as err:
        # Finalized and committed, as after execute: say how to write the artefacts again.
        raise _artefacts_not_written(cj_batch_id, output_dir, err) from err
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
        calls = judge_call_summary(session, batch_id)
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
            judge_calls=asdict(calls) if calls.calls else None,
        )
