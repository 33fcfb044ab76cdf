"""Grade scales: ordered grade labels that anchors fix and projections report.

A scale is data, not code: ``GradeScale(name, grades, below_lowest, priors)``. Users add their
own with :func:`register_grade_scale`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cjlib.errors import UsageError


@dataclass(frozen=True)
class GradeScale:
    """An ordered grade scale.

    Parameters
    ----------
    name : str
        Identifier stored in the database (``grade_scale`` columns).
    grades : tuple of str
        Grade labels from lowest to highest; anchors carry these.
    below_lowest : str, optional
        Label for essays clearly below the lowest anchor grade (it has no anchors).
    priors : mapping, optional
        Prior share of each grade (``all_labels``) in a student population; informative only.
    """

    name: str
    grades: tuple[str, ...]
    below_lowest: str | None = None
    priors: Mapping[str, float] | None = field(default=None)

    def __post_init__(self) -> None:
        if len(self.grades) < 2:
            raise ValueError(f"grade scale {self.name!r} needs at least 2 grades")
        labels = self.all_labels
        if len(set(labels)) != len(labels):
            raise ValueError(f"grade scale {self.name!r} repeats a grade label: {labels}")
        if self.priors is not None:
            unknown = set(self.priors) - set(labels)
            if unknown:
                raise ValueError(f"priors of {self.name!r} name unknown grades {sorted(unknown)}")

    @property
    def all_labels(self) -> tuple[str, ...]:
        """Every label an essay can be projected to, lowest first (``below_lowest`` included)."""
        return ((self.below_lowest,) if self.below_lowest else ()) + self.grades

    def index(self, grade: str) -> int:
        """Position of ``grade`` in :attr:`all_labels` (0 = lowest)."""
        try:
            return self.all_labels.index(grade)
        except ValueError:
            raise ValueError(
                f"grade {grade!r} is not on scale {self.name!r}; valid grades: "
                f"{', '.join(self.all_labels)}"
            ) from None


ENG5_LEGACY = GradeScale(
    name="eng5_np_legacy_9_step",
    grades=("F+", "E-", "E+", "D-", "D+", "C-", "C+", "B", "A"),
    below_lowest="F",
)
ENG5_NATIONAL = GradeScale(
    name="eng5_np_national_9_step",
    grades=tuple(str(i) for i in range(1, 10)),
    below_lowest="0",
)
SWEDISH_6 = GradeScale(name="swedish_6", grades=("F", "E", "D", "C", "B", "A"))

#: The 12 ENG5 anchor grades on ``eng5_np_legacy_9_step``, lowest first.
ENG5_ANCHOR_GRADES: tuple[str, ...] = (
    "F+", "F+", "E-", "E+", "D-", "D+", "C-", "C+", "B", "B", "A", "A",
)  # fmt: skip

_SCALES: dict[str, GradeScale] = {s.name: s for s in (ENG5_LEGACY, ENG5_NATIONAL, SWEDISH_6)}
GRADE_SCALES: Mapping[str, GradeScale] = MappingProxyType(_SCALES)


def register_grade_scale(scale: GradeScale) -> GradeScale:
    """Add a user-defined scale to :data:`GRADE_SCALES` (names must be new)."""
    if scale.name in _SCALES and _SCALES[scale.name] != scale:
        raise ValueError(f"a different grade scale named {scale.name!r} is already registered")
    _SCALES[scale.name] = scale
    return scale


def get_grade_scale(scale: str | GradeScale) -> GradeScale:
    """Look a scale up by name (a :class:`GradeScale` is returned as is)."""
    if isinstance(scale, GradeScale):
        return scale
    try:
        return _SCALES[scale]
    except (KeyError, TypeError):
        raise UsageError(
            f"unknown grade scale {scale!r}; choose one of: {', '.join(sorted(_SCALES))}"
        ) from None
