"""Clicks that correct one region of the starter's automatic prediction (oedema / core /
enhancing map): the target picked in the click dock is the region the clicks start from, and
Accept sets that region alone, the others kept where WT ⊇ TC ⊇ ET lets them be.

Before, the clicks started from the whole tumour whatever the target, so "tumour core" on a
predicted map answered with the whole tumour and Accept could not change the core."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

CASE = "BraTS2021_00006"  # never seen by the starter nor by the shipped click model


def _dock(viewer, prefix):
    return next(w for name, w in viewer.window.dock_widgets.items() if name.startswith(prefix))


def _predicted_case(make_napari_viewer, qtbot, shared_data):
    """`tumorseg view CASE`, then Predict (the shipped starter, whole volume, CPU) on its FLAIR."""
    from napari_tumorseg.cli.view import open_viewer
    from napari_tumorseg.widgets.predict import label_layer_name

    viewer = open_viewer(str(shared_data / "brats_multi_year" / CASE), show=True,
                         viewer=make_napari_viewer(show=True))
    predict = _dock(viewer, "Predict")
    predict.device.setCurrentText("cpu")
    predict.image_layer.setCurrentText(f"{CASE}_flair")
    predict.range_all.setChecked(True)
    with qtbot.waitSignal(predict.prediction_finished, timeout=300000):
        assert predict.predict() is not None
    assert predict.predictor.output_kind == "regions"
    labels = viewer.layers[label_layer_name(CASE)]
    clicks = _dock(viewer, "Segment by clicks")
    clicks.scan_combo.setCurrentText(f"{CASE}_flair")
    qtbot.waitUntil(lambda: clicks._auto is not None and clicks._auto_worker is None and not clicks.busy,
                    timeout=120000)
    assert clicks.target_combo.currentText() == labels.name
    return viewer, labels, clicks


def _robot_click(clicks, qtbot, shown, truth, spacing):
    from napari_tumorseg.interactive.robot import next_click

    point, positive = next_click(shown, truth, spacing)
    clicks.add_click(tuple(point), positive)
    qtbot.waitUntil(lambda: not clicks.busy and clicks.preview_mask is not None, timeout=120000)
    return tuple(int(round(v)) for v in point), positive


@pytest.mark.parametrize("target,region", [("tumour core", "TC"), ("enhancing", "ET")])
def test_a_click_corrects_one_region_of_the_starter_prediction(make_napari_viewer, qtbot, shared_data,
                                                                 target, region):
    from napari_tumorseg.brats import labels_to_regions
    from napari_tumorseg.interactive.robot import dice
    from napari_tumorseg.interactive.targets import region_mask, target_truth

    viewer, labels, clicks = _predicted_case(make_napari_viewer, qtbot, shared_data)
    name = {"TC": "core", "ET": "enhancing"}[region]
    truth = target_truth(np.asarray(viewer.layers[f"{CASE}_seg"].data), name, names=[CASE])
    before = np.asarray(labels.data).copy()
    wt0, tc0, et0 = labels_to_regions(before, "regionmap")
    prior = region_mask(before, region)
    assert prior.any() and (prior != wt0).any()

    clicks.region_combo.setCurrentText(target)
    assert f"refining the prediction '{labels.name}' ({target})" in clicks.engine_status.text()
    assert not clicks.value_spin.isEnabled()  # Accept sets the region: no label value to pick
    spacing = viewer.layers[f"{CASE}_flair"].scale[-3:]
    shown = prior
    scores = [dice(prior, truth)]
    for _ in range(3):
        point, positive = _robot_click(clicks, qtbot, shown, truth, spacing)
        shown = clicks.preview_mask.copy()
        assert shown[point] == positive, "the click is honoured"
        scores.append(dice(shown, truth))
    print(f"\n{CASE} {name} from the starter's prediction: Dice {' -> '.join(f'{s:.3f}' for s in scores)}")
    # The clicks start from the region, not from the whole tumour: far from every click the
    # preview is the predicted region (the whole tumour's oedema is not in it).
    assert not (shown & wt0 & ~tc0).sum() > 0.5 * (wt0 & ~tc0).sum()
    assert min(np.diff(scores)) >= -0.05 and scores[-1] >= scores[0]

    assert clicks.accept() is labels
    after = np.asarray(labels.data)
    wt, tc, et = labels_to_regions(after, "regionmap")
    assert np.array_equal({"TC": tc, "ET": et}[region], shown), "Accept sets the region to the preview"
    if region == "TC":
        assert np.array_equal(wt, wt0 | shown) and np.array_equal(et, et0 & shown)
    else:
        assert np.array_equal(wt, wt0 | shown) and np.array_equal(tc, tc0 | shown)
    labels.undo()  # one undo step takes the whole correction back
    np.testing.assert_array_equal(np.asarray(labels.data), before)


def test_a_loaded_segmentation_is_corrected_when_asked(make_napari_viewer, qtbot, shared_data):
    """A segmentation from elsewhere (BraTS 2021 labels: 1 necrosis, 2 oedema, 4 enhancing)
    whose core lost its upper half to oedema: "Correct it" makes the clicks start from its
    core, and Accept sets the core in the file's own label values."""
    from napari_tumorseg.brats import labels_to_regions
    from napari_tumorseg.cli.view import open_viewer
    from napari_tumorseg.interactive.robot import dice, next_click

    viewer = open_viewer(str(shared_data / "brats_multi_year" / CASE), show=True,
                         viewer=make_napari_viewer(show=True))
    clicks = _dock(viewer, "Segment by clicks")
    flair = viewer.layers[f"{CASE}_flair"]
    seg = viewer.layers[f"{CASE}_seg"]
    truth = np.asarray(seg.data)
    wt_t, tc_t, et_t = labels_to_regions(truth, "brats")
    zs = np.nonzero(tc_t.any(axis=(1, 2)))[0]
    edited = truth.copy()
    upper = np.zeros(truth.shape, bool)
    upper[zs[len(zs) // 2]:] = True
    edited[tc_t & upper] = 2  # the core's upper half called oedema
    layer = viewer.add_labels(edited, name=f"{CASE}_seg edited", scale=seg.scale, translate=seg.translate,
                              affine=seg.affine.affine_matrix, metadata=dict(seg.metadata))
    clicks.scan_combo.setCurrentText(flair.name)
    qtbot.waitUntil(lambda: clicks._auto is not None and clicks._auto_worker is None and not clicks.busy,
                    timeout=120000)
    clicks.target_combo.setCurrentText(layer.name)
    assert clicks.correct_box.isVisibleTo(clicks) and not clicks.correct_box.isChecked()
    clicks.region_combo.setCurrentText("tumour core")
    clicks.correct_box.setChecked(True)
    assert f"refining the labels '{layer.name}' (tumour core)" in clicks.engine_status.text()
    # No label value to pick: the value box is off and says what Accept does instead of
    # naming the oedema label it still holds.
    assert not clicks.value_spin.isEnabled() and "Target's region" in clicks.value_name.text()
    prior = labels_to_regions(edited, "brats")[1]
    point, positive = next_click(prior, tc_t, flair.scale[-3:])
    assert positive  # in the half the edit took away
    clicks.add_click(tuple(point), True)
    qtbot.waitUntil(lambda: not clicks.busy and clicks.preview_mask is not None, timeout=120000)
    shown = clicks.preview_mask.copy()
    print(f"\nloaded segmentation, core: Dice {dice(prior, tc_t):.3f} -> {dice(shown, tc_t):.3f}")
    assert (shown & prior).sum() >= 0.95 * prior.sum(), "the clicks start from its core"
    assert dice(shown, tc_t) >= dice(prior, tc_t) + 0.05
    assert clicks.accept() is layer
    after = np.asarray(layer.data)
    wt, tc, et = labels_to_regions(after, "brats")
    assert np.array_equal(tc, shown) and np.array_equal(wt, wt_t | shown)
    assert set(np.unique(after)) <= {0, 1, 2, 4}, "its own label values"


def test_a_reopened_prediction_is_corrected_in_its_own_convention(make_napari_viewer, qtbot, shared_data,
                                                                  tmp_path):
    """`tumorseg predict starter CASE -o pred.nii.gz`, later opened beside the case: its 1 / 2 / 3
    are oedema / core / enhancing (the names the file carries), so "Correct it" with tumour core
    starts from the predicted core. Read by its values as a BraTS 2013-2021 map, its oedema
    would have been the core."""
    from napari_tumorseg.brats import labels_to_regions
    from napari_tumorseg.cli import main
    from napari_tumorseg.cli.view import open_viewer
    from napari_tumorseg.interactive.robot import dice, next_click

    folder = shared_data / "brats_multi_year" / CASE
    out = tmp_path / "pred.nii.gz"
    assert main(["predict", "starter", str(folder), "-o", str(out), "--threads", "2", "--quiet"]) == 0
    viewer = open_viewer(str(folder), show=True, viewer=make_napari_viewer(show=True))
    layer = viewer.open(str(out), plugin="napari-tumorseg")[0]
    pred = np.asarray(layer.data)
    flair = viewer.layers[f"{CASE}_flair"]
    tc_t = labels_to_regions(np.asarray(viewer.layers[f"{CASE}_seg"].data), "brats")[1]
    clicks = _dock(viewer, "Segment by clicks")
    clicks.scan_combo.setCurrentText(flair.name)
    qtbot.waitUntil(lambda: clicks._auto is not None and clicks._auto_worker is None and not clicks.busy,
                    timeout=120000)
    clicks.target_combo.setCurrentText(layer.name)
    clicks.region_combo.setCurrentText("tumour core")
    clicks.correct_box.setChecked(True)
    assert f"refining the labels '{layer.name}' (tumour core)" in clicks.engine_status.text()
    prior, oedema = np.isin(pred, (2, 3)), pred == 1
    point, positive = next_click(prior, tc_t, flair.scale[-3:])
    clicks.add_click(tuple(point), positive)
    qtbot.waitUntil(lambda: not clicks.busy and clicks.preview_mask is not None, timeout=120000)
    shown = clicks.preview_mask
    print(f"\nreopened prediction, core: Dice {dice(prior, tc_t):.3f} -> {dice(shown, tc_t):.3f}")
    assert (shown & prior).sum() >= 0.9 * prior.sum(), "the clicks start from its core"
    assert (shown & oedema).sum() <= 0.1 * oedema.sum(), "not from its oedema"
    assert dice(shown, tc_t) >= dice(prior, tc_t) - 0.05
    # Accepted and added to a training set, it is trained as a region map (its names travel).
    assert clicks.accept() is layer
    from napari_tumorseg.training.datasets import open_source

    correct = _dock(viewer, "Correct and export")
    correct.labels_combo.setCurrentText(layer.name)
    correct.image_combo.setCurrentText(flair.name)
    correct.dataset_picker.set_path(tmp_path / "corrections")
    assert correct.add_to_training_set()
    assert open_source(tmp_path / "corrections").refs[0].label_convention == "regionmap"
