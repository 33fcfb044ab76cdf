"""Defaults shared by the library, the CLI and the notebooks: written once, imported everywhere.

The ENG5 demo job (``make run``, ``cj pipeline``) and the anchor registration use these; a
researcher's own study overrides them with options or notebook parameters.
"""

from __future__ import annotations

#: The grade scale of the ENG5 national test anchors (F+ … A, with F below the lowest anchor).
DEFAULT_GRADE_SCALE = "eng5_np_legacy_9_step"
#: Assignment and course of the packaged ENG5 sample data set.
DEFAULT_ASSIGNMENT_ID = "eng5-np-2016"
DEFAULT_COURSE_ID = "ENG5"
#: Label of the demo batch run by ``cj pipeline``.
DEFAULT_BATCH_LABEL = "eng5-demo"
#: Budget of the demo batch: 132 essays × 10 comparisons each / 2.
DEFAULT_MAX_COMPARISONS = 660
#: Seed of the simulated judge and the pairing in the demo batch.
DEFAULT_SEED = 20161
#: Judge of the demo batch.
DEFAULT_JUDGE = "simulated"
#: Seconds ``--await-completion`` waits for a batch before giving up.
DEFAULT_COMPLETION_TIMEOUT = 600.0
#: Number of anchors the ENG5 sample data set registers.
DEFAULT_EXPECTED_ANCHORS = 12

#: The design study (``cj study``, :func:`cjlib.design.run_design_study`): pairing strategies,
#: comparisons per essay, seeds, students per batch, judge discrimination and lapse share.
#: 4 seeds keep the default run under 3 minutes on 2 shared cores (docs/design_study.md).
DEFAULT_STUDY_STRATEGIES: tuple[str, ...] = ("balanced", "adaptive", "boundary")
DEFAULT_STUDY_PER_ESSAY: tuple[int, ...] = (3, 5, 10, 20, 40)
DEFAULT_STUDY_SEEDS = 4
DEFAULT_STUDY_STUDENTS = 120
DEFAULT_STUDY_DISCRIMINATION = 1.0
DEFAULT_STUDY_JUDGE_NOISE = 0.0
