"""Every figure renders to a PNG, with or without known true grades."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from matplotlib.figure import Figure

from cjlib.report.assembly import assemble_report
from cjlib.report.figures import FIGURES
from tests.unit.report.batches import batch_frames, renamed


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


@pytest.mark.parametrize("with_truth", [True, False])
def test_every_figure_renders_with_or_without_truth(with_truth):
    truth = pd.Series({f"S{i}": "C-" for i in range(6)}) if with_truth else None
    rep = assemble_report(batch_frames(failed=2), truth=truth)
    for plot in FIGURES:
        fig = plot(rep)
        assert isinstance(fig, Figure)
        assert _png(fig).startswith(b"\x89PNG")


def test_figures_draw_ids_with_dollar_signs_as_plain_text():
    # "$\\frac$" is not valid mathtext: drawn as math it would make savefig raise.
    frames = renamed(batch_frames(), {"S1": "$\\frac$", "S2": "$x$"})
    rep = assemble_report(frames)
    for plot in FIGURES:
        assert _png(plot(rep)).startswith(b"\x89PNG")
