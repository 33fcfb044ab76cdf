"""The data of a batch's report: its read model, stored scores with win/loss counts, and truth.

The batch itself is read by :func:`cjlib.db.queries.load_batch` into a
:class:`~cjlib.db.queries.BatchRecord`, the one read model every stage uses; this module adds
what only the report needs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cjlib.datasets import load_truth
from cjlib.db.queries import DECIDED, BatchRecord, load_batch, win_loss_counts

__all__ = [
    "DECIDED",
    "BatchRecord",
    "import_info",
    "load_batch",
    "load_true_grades",
    "positions_known",
    "stored_scores",
    "win_loss_counts",
]


def stored_scores(frames: BatchRecord) -> pd.DataFrame:
    """The batch's stored BT scores with win/loss counts from its decided comparisons.

    Returns
    -------
    pandas.DataFrame
        Indexed by essay id (name ``essay_id``), θ descending, columns ``theta``, ``se``,
        ``wins``, ``losses``, ``n_comparisons``, ``is_anchor``, ``anchor_grade``. Essays
        without a stored score are left out.
    """
    essays = frames.essays.dropna(subset=["bt_score", "bt_se"]).set_index("els_essay_id")
    counts = win_loss_counts(frames.comparisons).reindex(essays.index, fill_value=0)
    scores = pd.DataFrame(
        {
            "theta": essays["bt_score"].astype(float),
            "se": essays["bt_se"].astype(float),
            "wins": counts["wins"].astype(int),
            "losses": counts["losses"].astype(int),
            "n_comparisons": counts["n_comparisons"].astype(int),
            "is_anchor": essays["is_anchor"].astype(bool),
        },
        index=essays.index,
    )
    scores["anchor_grade"] = pd.Series(frames.anchor_grades, dtype=object).reindex(scores.index)
    scores.index.name = "essay_id"
    return scores.sort_values("theta", ascending=False, kind="stable")


def load_true_grades(
    frames: BatchRecord, dataset_dir: str | Path | None = None
) -> pd.Series | None:
    """True grades of the batch's student essays from the data set's ``truth.csv``.

    Parameters
    ----------
    frames : BatchRecord
    dataset_dir : path, optional
        Data set folder; default the one recorded in the batch's run parameters.

    Returns
    -------
    pandas.Series or None
        Student essay id → true grade label, for students of this batch; None when the folder
        or its ``truth.csv`` does not exist (real essays have no known truth).
    """
    folder = dataset_dir or frames.run.get("dataset")
    if not folder or not Path(folder).exists():
        return None
    truth = load_truth(folder)
    if truth is None:
        return None
    students = set(frames.essays.loc[~frames.essays["is_anchor"], "els_essay_id"])
    truth = truth.loc[truth["essay_id"].astype(str).isin(students)]
    return pd.Series(
        truth["true_grade"].to_numpy(dtype=object),
        index=pd.Index(truth["essay_id"].astype(str).to_numpy(dtype=object), name="essay_id"),
        name="true_grade",
    )


def import_info(frames: BatchRecord) -> dict | None:
    """What an imported batch recorded about its file, None for a batch that was judged.

    Returns
    -------
    dict or None
        The upload's ``processing_metadata["import"]`` (written by
        :func:`cjlib.workflow.imports.import_judgements`): ``source``, ``task``, ``anchors``,
        ``has_texts``, ``positions_known``, ``rows_read``, ``decisions``, ``excluded``,
        ``duplicates``, ``other_tasks``.
    """
    info = frames.metadata.get("import")
    return dict(info) if isinstance(info, dict) else None


def positions_known(frames: BatchRecord) -> bool:
    """Whether ``essay_a`` of the batch's pairs is the essay shown first (left, position A).

    A judged batch always knows; an import knows when its file said where each item was shown.
    Without positions an import stores every pair winner-first, so a position-A share of such a
    batch is 1 by construction and means nothing.
    """
    info = import_info(frames)
    return True if info is None else info.get("positions_known") is not False
