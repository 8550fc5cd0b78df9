"""The radiologist's loop on real data: predict, threshold, correct, measure, export."""

import numpy as np
import pydicom
import pytest
import torch

from napari_tumorseg.io.readers import read_path
from napari_tumorseg.models.checkpoint import save_checkpoint
from napari_tumorseg.widgets.correct import apply_edit
from napari_tumorseg.widgets.predict import label_layer_name, prob_layer_name
from tests.inference.test_predict import train_tiny_unet
from tests.widgets.conftest import add_dock, save_screenshot

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def brainix_ckpt(shared_data, tmp_path_factory):
    flair = read_path(shared_data / "dicom_brainix" / "FLAIR")[0]
    roi = read_path(shared_data / "dicom_brainix" / "ROI")[0]
    model, prep = train_tiny_unet(flair.data, roi.data, steps=60)
    path = tmp_path_factory.mktemp("ckpt") / "unet_brainix.pt"
    save_checkpoint(path, model, model_name="unet", config={"width": 4}, in_channels=1, out_channels=1,
                    preprocessing=prep, class_names=["background", "tumour"], history=[])
    return path


def _open_brainix(viewer, shared_data):
    viewer.open(str(shared_data / "dicom_brainix" / "FLAIR"), plugin="napari-tumorseg")
    viewer.open(str(shared_data / "dicom_brainix" / "ROI"), plugin="napari-tumorseg")
    flair = next(l for l in viewer.layers if type(l).__name__ == "Image")
    roi = next(l for l in viewer.layers if type(l).__name__ == "Labels")
    return flair, roi


def _predict(viewer, qtbot, ckpt, flair):
    widget = add_dock(viewer, "Predict")
    widget.ckpt_picker.set_path(ckpt)
    widget.device.setCurrentText("cpu")
    assert widget.load_model() is not None
    widget.image_layer.setCurrentText(flair.name)
    with qtbot.waitSignal(widget.prediction_finished, timeout=300000):
        assert widget.predict() is not None
    return widget


def test_predict_threshold_correct_measure_export(make_napari_viewer, qtbot, shared_data, brainix_ckpt, tmp_path,
                                                  screenshot_dir):
    viewer = make_napari_viewer(show=True)
    flair, roi = _open_brainix(viewer, shared_data)
    widget = _predict(viewer, qtbot, brainix_ckpt, flair)

    prob = viewer.layers[prob_layer_name(flair.name)]
    labels = viewer.layers[label_layer_name(flair.name)]
    assert prob.data.shape == flair.data.shape == labels.data.shape
    np.testing.assert_allclose(labels.scale, flair.scale)
    assert 0.0 <= prob.data.min() and prob.data.max() <= 1.0
    assert labels.data.any()
    viewer.dims.set_current_step(0, int(np.argmax(roi.data.sum(axis=(1, 2)))))
    save_screenshot(viewer, screenshot_dir / "predict_widget.png")

    # The threshold slider rebuilds the labels from the cached probabilities only.
    calls = widget.model_calls
    n_half = int(labels.data.sum())
    widget.threshold.setValue(90)
    n_high = int((labels.data > 0).sum())
    widget.threshold.setValue(10)
    n_low = int((labels.data > 0).sum())
    assert widget.model_calls == calls
    assert n_high <= n_half <= n_low and n_high < n_low
    np.testing.assert_array_equal(labels.data > 0, widget.probabilities > 0.10)
    widget.threshold.setValue(50)

    # Re-predicting only the viewed slice keeps the rest of the map (and of the labels).
    cached = widget.probabilities.copy()
    widget.range_current.setChecked(True)
    with qtbot.waitSignal(widget.prediction_finished, timeout=300000):
        assert widget.predict() is not None
    z = int(viewer.dims.current_step[0])
    others = np.arange(cached.shape[0]) != z
    np.testing.assert_array_equal(widget.probabilities[others], cached[others])
    np.testing.assert_allclose(widget.probabilities[z], cached[z], atol=1e-4)  # batch of 1 vs 8
    assert widget.model_calls == calls + 1

    # Correction: click-to-keep keeps the component under the click; one undo restores.
    correct = add_dock(viewer, "Correct and export")
    correct.labels_combo.setCurrentText(labels.name)
    correct.image_combo.setCurrentText(flair.name)
    # The opened ROI is a reference mask: offered as the ground truth without asking.
    assert correct.gt_combo.currentText() == roi.name
    before = labels.data.copy()
    from scipy import ndimage

    comps, n = ndimage.label(before > 0, structure=np.ones((3, 3, 3)))
    assert n >= 1
    biggest = np.argmax(np.bincount(comps.ravel())[1:]) + 1
    point = np.argwhere(comps == biggest)[0]
    correct.keep_at(point)
    np.testing.assert_array_equal(labels.data > 0, comps == biggest)
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)

    report = correct.measure()
    assert "mL" in report and "Dice" in report
    save_screenshot(viewer, screenshot_dir / "correct_widget.png")

    # Export as DICOM-SEG referencing the FLAIR series; never overwrite without asking.
    out = tmp_path / "seg.dcm"
    correct.format_combo.setCurrentText("DICOM-SEG (.dcm)")
    correct.export_picker.set_path(out)
    assert correct.export() == [out]
    seg = pydicom.dcmread(out)
    assert seg.Modality == "SEG"
    # The provenance `tumorseg predict` writes for the same model (export.dicom_seg.segment_algorithm).
    assert {s.SegmentAlgorithmType for s in seg.SegmentSequence} == {"SEMIAUTOMATIC"}
    assert {s.SegmentAlgorithmName for s in seg.SegmentSequence} == {widget.session.predictor.model_name}
    refs = {r.SeriesInstanceUID for r in seg.ReferencedSeriesSequence}
    assert flair.metadata["dicom"].series_uid in refs
    mtime = out.stat().st_mtime_ns
    assert correct.export() == []  # refused: exists and overwrite is off
    assert out.stat().st_mtime_ns == mtime
    # NIfTI export lands on the FLAIR's world grid.
    correct.format_combo.setCurrentText("NIfTI (.nii.gz)")
    correct.export_picker.set_path(tmp_path / "seg.nii.gz")
    [nii] = correct.export()
    back = read_path(nii)[0]
    np.testing.assert_array_equal(back.data, labels.data)
    np.testing.assert_allclose(back.affine, np.asarray(flair.metadata["tumorseg"]["affine"]), atol=1e-4)
    # Labels no model produced (the hand-drawn ROI) are MANUAL, as in the CLI without a model.
    correct.labels_combo.setCurrentText(roi.name)
    correct.format_combo.setCurrentText("DICOM-SEG (.dcm)")
    correct.export_picker.set_path(tmp_path / "roi_seg.dcm")
    [roi_out] = correct.export()
    assert {s.SegmentAlgorithmType for s in pydicom.dcmread(roi_out).SegmentSequence} == {"MANUAL"}


def test_fill_holes_islands_and_undo_share_one_history(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    _, roi = _open_brainix(viewer, shared_data)
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(roi.name)
    original = roi.data.copy()
    z = int(np.argmax(original.sum(axis=(1, 2))))
    ys, xs = np.nonzero(original[z])
    cy, cx = int(ys.mean()), int(xs.mean())
    # Punch a hole with the layer's own history (like an eraser stroke), then fill it.
    hole = original.copy()
    hole[z, cy - 1:cy + 2, cx - 1:cx + 2] = 0
    assert original[z, cy - 1:cy + 2, cx - 1:cx + 2].all()
    apply_edit(roi, hole)
    viewer.dims.set_current_step(0, z)
    assert widget.fill_holes() > 0
    np.testing.assert_array_equal(roi.data[z, cy - 1:cy + 2, cx - 1:cx + 2], 1)
    # A speck far from the tumour is removed as an island.
    speck = roi.data.copy()
    speck[0, 0, 0] = 1
    apply_edit(roi, speck)
    widget.island_mm3.setValue(10.0)
    assert widget.remove_islands() >= 1
    assert roi.data[0, 0, 0] == 0
    for _ in range(4):
        roi.undo()
    np.testing.assert_array_equal(roi.data, original)


def test_volume_in_ml_on_brainix_roi(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    _, roi = _open_brainix(viewer, shared_data)
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(roi.name)
    text = widget.measure()
    voxel_ml = float(np.prod(roi.scale)) / 1000.0
    expected = np.count_nonzero(roi.data) * voxel_ml
    assert f"{expected:.2f}" in text


def test_add_to_training_set_never_replaces(make_napari_viewer, shared_data, tmp_path):
    viewer = make_napari_viewer()
    flair, roi = _open_brainix(viewer, shared_data)
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(roi.name)
    widget.image_combo.setCurrentText(flair.name)
    widget.dataset_picker.set_path(tmp_path / "set")
    first = widget.add_to_training_set()
    second = widget.add_to_training_set()
    assert len(first) == len(second) == 2 and first[0].parent != second[0].parent
    from napari_tumorseg.io.readers import read_path
    from napari_tumorseg.widgets._session import session_for

    mask = read_path(first[1])[0]
    np.testing.assert_array_equal(np.asarray(mask.data) > 0, np.asarray(roi.data) > 0)
    # written with the scan's world geometry, not a bare array
    np.testing.assert_allclose(mask.affine, session_for(viewer).volume_of(flair).affine, atol=1e-4)
    train = widget.fine_tune()
    assert train is not None and str(train.data_picker.path()) == str(tmp_path / "set")


def test_classifier_checkpoint_shows_tumour_type(make_napari_viewer, qtbot, tmp_path):
    from napari_tumorseg.models import create_model, get_info
    from napari_tumorseg.training.preprocessing import default_preprocessing

    info = get_info("convnextv2")
    torch.manual_seed(0)
    model = create_model("convnextv2", **info.tiny_config)
    prep = default_preprocessing(2, 64, 3, "classes", normalize="zscore")
    prep["channel_mode"] = "repeat"
    prep["class_names"] = info.class_names
    ckpt = tmp_path / "cls.pt"
    save_checkpoint(ckpt, model, model_name="convnextv2", config=info.tiny_config, in_channels=3,
                    out_channels=4, preprocessing=prep, class_names=info.class_names, history=[])
    viewer = make_napari_viewer()
    viewer.open_sample("napari-tumorseg", "mri_phantom")
    widget = add_dock(viewer, "Predict")
    widget.ckpt_picker.set_path(ckpt)
    widget.device.setCurrentText("cpu")
    assert widget.load_model().is_classifier
    widget.image_layer.setCurrentText("PHANTOM FLAIR")
    with qtbot.waitSignal(widget.prediction_finished, timeout=300000):
        assert widget.predict() is not None
    assert widget.case_result is not None
    assert widget.case_result.label in info.class_names
    assert np.isclose(widget.case_result.probabilities.sum(), 1.0)
    viewer.dims.set_current_step(0, 16)
    text = widget.class_label.text()
    assert text.startswith("Slice 16:") and "Case:" in text
    assert any(name in text for name in info.class_names)


def test_registry_model_with_a_bare_weights_file(make_napari_viewer, qtbot, tmp_path):
    from napari_tumorseg.models import create_model

    torch.manual_seed(0)
    weights = tmp_path / "unet_weights.pt"
    torch.save(create_model("unet").state_dict(), weights)  # paper configuration, bare state dict
    viewer = make_napari_viewer()
    viewer.open_sample("napari-tumorseg", "mri_phantom")
    widget = add_dock(viewer, "Predict")
    widget.source_combo.setCurrentText("unet")
    widget.ckpt_picker.set_path(weights)
    widget.device.setCurrentText("cpu")
    predictor = widget.load_model()
    assert predictor is not None and predictor.model_name == "unet"
    widget.image_layer.setCurrentText("PHANTOM FLAIR")
    widget.range_current.setChecked(True)
    viewer.dims.set_current_step(0, 16)
    with qtbot.waitSignal(widget.prediction_finished, timeout=300000):
        assert widget.predict() is not None
    prob = viewer.layers[prob_layer_name("PHANTOM FLAIR")].data
    assert prob.shape == (32, 128, 128)
    assert prob[16].any() and not prob[:16].any() and not prob[17:].any()
    # A weights file for another architecture is a one-line error, not a traceback.
    widget.source_combo.setCurrentText("lintunet")
    assert widget.load_model() is None and widget.predictor is None


def test_cancel_stops_a_prediction(make_napari_viewer, qtbot, shared_data, brainix_ckpt):
    viewer = make_napari_viewer()
    flair, _ = _open_brainix(viewer, shared_data)
    widget = add_dock(viewer, "Predict")
    widget.ckpt_picker.set_path(brainix_ckpt)
    widget.device.setCurrentText("cpu")
    widget.image_layer.setCurrentText(flair.name)
    widget.batch.setValue(1)
    with qtbot.waitSignal(widget.prediction_finished, timeout=300000):
        assert widget.predict() is not None
        widget.cancel()  # before the worker's first batch can finish
    assert widget.status.text().startswith("cancelled")
    done = np.flatnonzero(widget.probabilities.reshape(widget.probabilities.shape[0], -1).any(axis=1))
    assert len(done) < flair.data.shape[0]
    assert widget.predict_button.isEnabled()


def test_a_model_whose_validation_chose_the_largest_component_keeps_it(
        make_napari_viewer, qtbot, shared_data, tmp_path):
    """best.pt's post-processing (inference.postprocess) in the Predict dock: named in its
    box, applied to the whole volume, and unticking gives the model's own labels back."""
    from scipy import ndimage as ndi

    ckpt = torch.load(_brainix_path(shared_data, tmp_path), map_location="cpu", weights_only=True)
    ckpt["extra"] = {"postprocessing": {"rule": "largest_component", "cases": 1, "dice_raw": 0.5,
                                        "dice_rule": 0.6}}
    path = tmp_path / "largest.pt"
    torch.save(ckpt, path)
    viewer = make_napari_viewer()
    flair, _roi = _open_brainix(viewer, shared_data)
    widget = add_dock(viewer, "Predict")
    widget.ckpt_picker.set_path(path)
    widget.device.setCurrentText("cpu")
    assert widget.load_model() is not None
    assert widget.clean_box.isVisibleTo(widget) and "largest component" in widget.clean_box.text()
    widget.threshold.setValue(5)  # a low threshold: islands of noise beside the tumour
    widget.image_layer.setCurrentText(flair.name)
    with qtbot.waitSignal(widget.prediction_finished, timeout=300000):
        assert widget.predict() is not None
    layer = viewer.layers[label_layer_name(flair.name)]
    count = lambda m: ndi.label(m > 0, np.ones((3, 3, 3), bool))[1]  # noqa: E731
    assert count(np.asarray(layer.data)) == 1
    widget.clean_box.setChecked(False)
    n_all = count(np.asarray(layer.data))
    assert n_all >= 1
    widget.clean_box.setChecked(True)
    assert count(np.asarray(layer.data)) == 1
    if n_all > 1:
        assert "dropped" in widget.volume_label.text()


def _brainix_path(shared_data, tmp_path):
    flair = read_path(shared_data / "dicom_brainix" / "FLAIR")[0]
    roi = read_path(shared_data / "dicom_brainix" / "ROI")[0]
    model, prep = train_tiny_unet(flair.data, roi.data, steps=30)
    path = tmp_path / "unet_brainix.pt"
    save_checkpoint(path, model, model_name="unet", config={"width": 4}, in_channels=1, out_channels=1,
                    preprocessing=prep, class_names=["background", "tumour"], history=[])
    return path
