"""The batch workflow: anchor registration, batch execution, callbacks, finalization, artefacts.

These are the only functions that write CJ batches; the CLI and the notebooks call them.
"""

from cjlib.workflow.anchors import register_anchors, verify_anchors
from cjlib.workflow.execute import BatchRunResult, execute_batch
from cjlib.workflow.finalizer import BatchFinalizer, FinalizationResult

__all__ = [
    "BatchFinalizer",
    "BatchRunResult",
    "FinalizationResult",
    "execute_batch",
    "register_anchors",
    "verify_anchors",
]
