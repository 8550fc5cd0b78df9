"""The one progress format the CLI and the docks share."""

from __future__ import annotations

import math

from napari_tumorseg.progress import format_eta, progress_text


def test_progress_text_and_eta():
    assert progress_text("predicting", 12, 40, "slices") == "predicting: 12/40 slices (30%)"
    assert progress_text("masks", 0, 0) == "masks: 0/0"
    assert progress_text("epoch 2, batch", 5, 10, eta_s=65.4) == "epoch 2, batch: 5/10 (50%), ETA 1m05s"
    assert format_eta(3 * 3600 + 5 * 60 + 9) == "3h05m"
    assert format_eta(math.inf) == format_eta(None) == format_eta(-1) == "?"
