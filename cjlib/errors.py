"""Domain exceptions: every error a user can cause, each with a message saying what to do.

The CLI turns a :class:`CJError` into one line on stderr and its ``exit_code``;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CJError(Exception):
    """Base class of errors a user can cause (bad id, bad URL, missing file)."""

    exit_code: int = 1


class UsageError(CJError):
    """A command was called with arguments that cannot work."""

    exit_code = 2


class DatabaseURLError(UsageError):
    """The database URL cannot be parsed, has no driver, or the server cannot be reached."""


class NotFoundError(CJError):
    """A batch, assignment or file named by the user does not exist."""

    exit_code = 1


class InvalidStateTransition(CJError):
    """A CJ batch state change that the state machine does not allow."""


class DatasetError(CJError):
    """A data set folder is malformed: missing file, unknown grade, empty text."""

    exit_code = 2


class GuardRefused(CJError):
    """A destructive command refused to run against a non-development database."""

    exit_code = 2


class DisconnectedComparisonsError(CJError, ValueError):
    """The comparison graph is not strongly connected, so the BT MLE does not exist.

    Attributes
    ----------
    components : list of list
        Strongly connected components of the directed win graph (largest first).
    always_win, always_lose : list
        Essays that never lost / never won.
    """

    def __init__(self, message: str, *, components=None, always_win=None, always_lose=None):
        super().__init__(message)
        self.components = components or []
        self.always_win = always_win or []
        self.always_lose = always_lose or []


class ProjectionUnavailable(CJError):
    """Grades cannot be projected honestly; ``reason`` is machine-readable.

    Reasons: ``too_few_anchor_grades``, ``unknown_anchor_grade``, ``anchors_missing_from_scores``,
    ``no_anchors``, ``no_students``, ``invalid_scores``, ``conflicting_anchor_grades``,
    ``unknown_scale``, ``too_little_information`` (students' reliability below
    ``cjlib.projection.MIN_RELIABILITY``).
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class BatchRefused(CJError):
    """A batch cannot be started or resumed (no instructions or anchors, bad budget, FAILED)."""

    exit_code = 2


class BatchNotResumable(CJError):
    """A batch FAILED or was CANCELLED: ``cj batch resume`` says why (exit code 1)."""


class CompletionTimeout(CJError):
    """A batch did not complete within the completion timeout; it is left for diagnostics."""

    exit_code = 4


class JudgeAuthError(CJError):
    """The LLM server refused the API key (401/403): the run stops, decided pairs are kept
    and the batch stays resumable (exit code 2)."""

    exit_code = 2


class PipelineError(CJError):
    """A notebook in the pipeline failed; the message names notebook, cell and error."""

    exit_code = 1


class JudgementFileError(CJError):
    """A decision export (or its anchors file) cannot be imported; nothing was written.

    The message names the file, the first offending rows (as a spreadsheet numbers them:
    the header is row 1) and what to change.
    """

    exit_code = 2
