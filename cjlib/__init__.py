"""cjlib: comparative judgement of essays, from comparisons to projected grades.

The data flows comparisons → :mod:`cjlib.scoring` → scores → :mod:`cjlib.projection`
→ grades → :mod:`cjlib.workflow` (batch, finalizer, persistence) → :mod:`cjlib.diagnostics`
→ notebooks → ``reports/``.
"""

__version__ = "0.1.0"
