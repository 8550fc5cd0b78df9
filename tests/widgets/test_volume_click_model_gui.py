"""The volume click model in the window: a BraTS case opened as `tumorseg view CASE` opens
it (one layer per sequence), Segment by clicks on automatic, target "tumour core", one click
on the T2 scan: the dock reads FLAIR and T1c from the case's other layers and answers with
the model's core (the classic engine on T2 alone calls the oedema core too)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

CASE = "BraTS2021_00006"  # never seen by resources/starter_click_brats.pt


def _clicks_dock(viewer):
    """The Segment by clicks dock napari made for the viewer (`tumorseg view` opens it)."""
    from napari_tumorseg.widgets.segment_clicks import SegmentClicksWidget

    dock = next(w.findChild(SegmentClicksWidget) or w for n, w in viewer.window.dock_widgets.items()
                if n.startswith("Segment by clicks"))
    assert isinstance(dock, SegmentClicksWidget)
    return dock


def _one_click(dock, qtbot, scan, truth, region):
    """On ``scan`` with the automatic engine and ``region`` as the target: one click at the
    truth's deepest point, and the answer waited for."""
    from napari_tumorseg.interactive.robot import next_click

    dock.scan_combo.setCurrentText(scan.name)
    qtbot.waitUntil(lambda: dock._auto is not None and dock._auto_worker is None, timeout=60000)
    dock.region_combo.setCurrentText(region)
    point, _ = next_click(np.zeros(truth.shape, bool), truth, scan.scale)
    dock.add_click(tuple(point), True)
    qtbot.waitUntil(lambda: not dock.busy and dock.preview_mask is not None, timeout=120000)


def test_one_click_gives_the_tumour_core_from_the_case_sequences(make_napari_viewer, qtbot, shared_data):
    from napari_tumorseg.cli.view import open_viewer
    from napari_tumorseg.interactive.robot import dice
    from napari_tumorseg.interactive.targets import target_truth
    from napari_tumorseg.widgets.segment_clicks import AUTO

    folder = shared_data / "brats_multi_year" / CASE
    viewer = open_viewer(str(folder), show=True, viewer=make_napari_viewer(show=True))
    dock = _clicks_dock(viewer)
    assert dock.engine_combo.currentText() == AUTO
    t2 = viewer.layers[f"{CASE}_t2"]
    dock.scan_combo.setCurrentText(t2.name)
    qtbot.waitUntil(lambda: dock._auto is not None and dock._auto_worker is None, timeout=60000)
    assert "this scan: starter_click_brats.pt" in dock.engine_status.text()  # FLAIR + T1c are open
    viewer.layers.remove(f"{CASE}_t1ce")  # without T1c the chain's any-subset model answers
    assert "this scan: starter_click_brats_any.pt" in dock.engine_status.text()
    viewer.open(str(folder / f"{CASE}_t1ce.nii.gz"), plugin="napari-tumorseg")
    assert "this scan: starter_click_brats.pt" in dock.engine_status.text()
    truth = target_truth(np.asarray(viewer.layers[f"{CASE}_seg"].data), "core", names=[CASE])
    # The scan is prepared before the first click (a worker, as one of the dock's jobs): the
    # click reuses the case's normalisation instead of paying for it.
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    assert dock.warm_ups >= 1
    prepared = dock.engine()[0].learned._norm
    assert prepared is not None
    _one_click(dock, qtbot, t2, truth, "tumour core")
    engine = dock.session.click_engine
    assert engine.learned._norm is prepared
    assert engine.learned.target == "core"  # the model answered, told the target
    score = dice(dock.preview_mask, truth)
    print(f"\nvolume click model in the dock, {CASE} core, one click: Dice {score:.3f} "
          f"in {dock.last_seconds:.2f} s")
    assert score >= 0.80
    assert f"by {engine.learned.path.split('/')[-1]}" in dock.result_label.text()


def test_a_lone_flair_is_answered_by_the_any_subset_model_and_the_dock_says_so(make_napari_viewer, qtbot,
                                                                               shared_data):
    """`tumorseg view` on one FLAIR file: no T1c to pair it with, so the automatic chain hands
    the click to starter_click_brats_any.pt, and the result line names it."""
    from napari_tumorseg.cli.view import open_viewer
    from napari_tumorseg.interactive.engines import VOLUME_ANY
    from napari_tumorseg.interactive.robot import dice
    from napari_tumorseg.interactive.targets import target_truth
    from napari_tumorseg.io.readers import read_path

    folder = shared_data / "brats_multi_year" / CASE
    viewer = open_viewer(str(folder / f"{CASE}_flair.nii.gz"), show=True, viewer=make_napari_viewer(show=True))
    dock = _clicks_dock(viewer)
    truth = target_truth(np.asarray(read_path(folder / f"{CASE}_seg.nii.gz")[0].data), "whole", names=[CASE])
    flair = viewer.layers[0]
    dock.scan_combo.setCurrentText(flair.name)
    qtbot.waitUntil(lambda: dock._auto is not None and dock._auto_worker is None, timeout=60000)
    assert VOLUME_ANY in dock.engine_status.text()
    assert f"this scan: {VOLUME_ANY}" in dock.engine_status.text()  # said before the first click
    _one_click(dock, qtbot, flair, truth, "whole tumour")
    assert f"by {VOLUME_ANY}" in dock.result_label.text()
    assert dock.session.click_engine.fallback.target == "whole"
    assert dice(dock.preview_mask, truth) >= 0.80


def test_a_case_without_t1c_gives_the_any_subset_model_every_sequence_it_has(make_napari_viewer, qtbot,
                                                                             shared_data):
    """A case open without its T1c (and T1): the FLAIR + T1c model cannot read it, so the chain's
    model for any subset gets the case's FLAIR and T2 by name (T1 and T1c as zeros) — not the
    clicked scan alone."""
    from napari_tumorseg.cli.view import open_viewer
    from napari_tumorseg.interactive.engines import VOLUME_ANY
    from napari_tumorseg.interactive.targets import target_truth

    folder = shared_data / "brats_multi_year" / CASE
    viewer = open_viewer(str(folder), show=True, viewer=make_napari_viewer(show=True))
    for name in (f"{CASE}_t1ce", f"{CASE}_t1"):
        viewer.layers.remove(name)
    dock = _clicks_dock(viewer)
    truth = target_truth(np.asarray(viewer.layers[f"{CASE}_seg"].data), "whole", names=[CASE])
    _one_click(dock, qtbot, viewer.layers[f"{CASE}_flair"], truth, "whole tumour")
    assert f"by {VOLUME_ANY}" in dock.result_label.text()
    read = dock.session.click_engine.fallback._norm  # FLAIR, T1, T1c, T2 as the model got them
    assert read.shape[0] == 4
    assert np.abs(read[0]).sum() > 0 and np.abs(read[3]).sum() > 0  # FLAIR and T2 read
    assert not np.abs(read[1]).any() and not np.abs(read[2]).any()  # T1 and T1c: zeros
