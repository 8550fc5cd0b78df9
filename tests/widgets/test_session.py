"""One session per viewer: the docks share the case, the model and the prediction by reference."""

import numpy as np
from tests.widgets.conftest import add_dock, wait_for_worker
import pytest
import torch
from qtpy.QtCore import Qt

from napari_tumorseg.models import create_model
from napari_tumorseg.models.checkpoint import save_checkpoint
from napari_tumorseg.training.preprocessing import default_preprocessing
from napari_tumorseg.widgets._session import session_for

pytestmark = pytest.mark.gui


def _ckpt(path, channels, names):
    torch.manual_seed(0)
    model = create_model("unet", in_channels=channels, out_channels=1, width=4)
    prep = default_preprocessing(2, [48, 48], channels, "binary")
    prep.update(normalize="zscore", channel_names=list(names), class_names=["background", "tumour"])
    save_checkpoint(path, model.eval(), model_name="unet", config={"width": 4}, in_channels=channels,
                    out_channels=1, preprocessing=prep, class_names=["background", "tumour"], history=[])
    return path


def _load_case(viewer, qtbot, folder, keep, as_channels):
    widget = add_dock(viewer, "Load study")
    widget.picker.set_path(folder)
    widget.scan()
    for r in range(widget.table.rowCount()):
        name = widget.table.item(r, 0).text().lower()
        widget.table.item(r, 0).setCheckState(Qt.Checked if any(k in name for k in keep) else Qt.Unchecked)
    widget.as_channels.setChecked(as_channels)
    worker = widget.open_selected()
    wait_for_worker(qtbot, worker, timeout=120000)
    return widget


def test_sessions_are_per_viewer(make_napari_viewer):
    a, b = make_napari_viewer(), make_napari_viewer()
    assert session_for(a) is session_for(a)
    assert session_for(a) is not session_for(b)


def test_every_dock_opened_through_napari_shares_one_session(make_napari_viewer):
    """napari hands each plugin dock its own proxy of the viewer: still ONE session."""
    from napari_tumorseg.cli.view import DOCKS

    viewer = make_napari_viewer()
    docks = [add_dock(viewer, name) for name in DOCKS]
    sessions = {id(session_for(d.viewer)) for d in docks} | {id(d.session) for d in docks if hasattr(d, "session")}
    assert sessions == {id(session_for(viewer))}
    assert all(d.viewer is viewer for d in docks)


def test_channels_of_a_case_reach_the_model_together(make_napari_viewer, qtbot, shared_data, tmp_path):
    """'As channels' makes one case; a 2-channel checkpoint gets FLAIR and T1c, not one scan twice."""
    viewer = make_napari_viewer()
    case = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
    _load_case(viewer, qtbot, case, ("flair", "t1c"), as_channels=True)
    session = session_for(viewer)
    images = session.image_layers()
    assert len(images) == 2
    vols = {id(session.volume_of(l)) for l in images}
    assert len(vols) == 1, "the two channel layers must share ONE case volume"
    vol = session.volume_of(images[0])
    assert vol.data.shape[0] == 2

    widget = add_dock(viewer, "Predict")
    widget.ckpt_picker.set_path(_ckpt(tmp_path / "two.pt", 2, ["T1c", "FLAIR"]))
    widget.device.setCurrentText("cpu")
    assert widget.load_model() is not None
    widget.image_layer.setCurrentText(images[0].name)
    layer, data, _ = widget._source()
    assert data.shape[0] == 2
    # Checkpoint order (T1c, FLAIR), whatever the layer order.
    t1c = next(l for l in images if "t1c" in l.name.lower())
    np.testing.assert_array_equal(data[0], np.asarray(t1c.data))


def test_a_single_scan_is_refused_by_a_four_channel_model(make_napari_viewer, qtbot, shared_data, tmp_path,
                                                          monkeypatch):
    viewer = make_napari_viewer()
    viewer.open(str(shared_data / "dicom_brainix" / "FLAIR"), plugin="napari-tumorseg")
    errors = []
    monkeypatch.setattr("napari_tumorseg.widgets.predict.notify_error", lambda e: errors.append(str(e)))
    widget = add_dock(viewer, "Predict")
    widget.ckpt_picker.set_path(_ckpt(tmp_path / "four.pt", 4, ["FLAIR", "T1", "T1c", "T2"]))
    widget.device.setCurrentText("cpu")
    assert widget.load_model() is not None
    n_layers = len(viewer.layers)
    assert widget.predict() is None
    assert len(errors) == 1 and "needs 4 input channels" in errors[0]
    assert len(viewer.layers) == n_layers  # nothing half-made


def test_correct_dock_follows_the_prediction_by_reference(make_napari_viewer, qtbot, shared_data, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(str(shared_data / "dicom_brainix" / "FLAIR"), plugin="napari-tumorseg")
    flair = viewer.layers[0]
    predict = add_dock(viewer, "Predict")
    correct = add_dock(viewer, "Correct and export")
    ckpt = _ckpt(tmp_path / "one.pt", 1, ["FLAIR"])
    predict.ckpt_picker.set_path(ckpt)
    predict.device.setCurrentText("cpu")
    predict.load_model()
    predict.image_layer.setCurrentText(flair.name)
    predict.range_current.setChecked(True)
    with qtbot.waitSignal(predict.prediction_finished, timeout=120000):
        assert predict.predict() is not None
    session = session_for(viewer)
    labels = session.prediction.labels_layer
    labels.name = "my corrected tumour"  # renamed by the user: still the session's output
    correct._refresh_layers()
    assert correct.labels_layer() is labels
    assert session.source_of(labels) is flair
    assert session.checkpoint_path == str(ckpt)
    # The export geometry comes from the source volume, not the labels layer's copy.
    src = correct._source_volume(labels)
    assert src.spatial_shape == tuple(np.shape(flair.data))
    np.testing.assert_allclose(src.affine, flair.metadata["tumorseg"]["affine"])


def test_train_dock_trains_on_every_channel_of_the_session_case(make_napari_viewer, qtbot, shared_data):

    viewer = make_napari_viewer()
    case = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
    _load_case(viewer, qtbot, case, ("flair", "t1c", "otmulticlass"), as_channels=True)
    train = add_dock(viewer, "Train")
    images = session_for(viewer).image_layers()
    labels = next(l for l in viewer.layers if type(l).__name__ == "Labels")
    train.image_layer.setCurrentText(images[0].name)
    train.labels_layer.setCurrentText(labels.name)
    (item,) = train._layer_data()
    assert item["image"].shape == (2, *labels.data.shape)
    assert [n.lower() for n in item["channel_names"]] == ["flair", "t1c"]


def test_the_session_puts_orientation_letters_on_the_canvas(make_napari_viewer, shared_data):
    from napari_tumorseg import orientation_letters as orientation

    viewer = make_napari_viewer()
    assert viewer not in orientation._INSTALLED
    add_dock(viewer, "Correct and export")  # any dock creates the session, and the session installs the letters
    overlay = orientation._INSTALLED.get(viewer)
    assert overlay is not None and overlay is orientation.install_orientation_letters(viewer)
    viewer.open(str(shared_data / "dicom_brainix" / "FLAIR"), plugin="napari-tumorseg")
    letters = orientation.letters_for_viewer(viewer)
    assert letters is not None and {letters[k] for k in letters} >= {"A", "P", "R", "L"}
