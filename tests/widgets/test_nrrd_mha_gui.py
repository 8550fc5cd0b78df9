"""NRRD / MetaImage in a real viewer (issue 15): File -> Open places them on their grid
(a .seg.nrrd as named labels), a bad file is one notification line, and the Load study dock
lists and opens them."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_tumorseg.io.readers import read_path
from tests.io.test_study_nrrd_mha import NAMES, make_case
from tests.widgets.conftest import add_dock, wait_for_worker

pytestmark = pytest.mark.gui


def test_file_open_places_metaimage_and_a_slicer_segmentation(make_napari_viewer, shared_data, tmp_path):
    viewer = make_napari_viewer()
    mha = shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.mha"
    (image,) = viewer.open(str(mha), plugin="napari-tumorseg")
    (nifti,) = read_path(shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.nii.gz")
    assert type(image).__name__ == "Image"
    np.testing.assert_array_equal(np.asarray(image.data), nifti.data)
    np.testing.assert_allclose(image.scale, nifti.layer_geometry()["scale"])
    np.testing.assert_allclose(image.translate, nifti.layer_geometry()["translate"])
    folder, truth = make_case(shared_data, tmp_path / "BraTS2021_00002")
    (labels,) = viewer.open(str(folder / "BraTS2021_00002_seg.seg.nrrd"), plugin="napari-tumorseg")
    assert type(labels).__name__ == "Labels" and labels.metadata["label_names"] == NAMES
    np.testing.assert_array_equal(np.asarray(labels.data), truth.data)
    # napari's File -> Save with the plugin's writer: the names go back into the file.
    out = tmp_path / "saved.seg.nrrd"
    viewer.layers.selection = {labels}
    assert viewer.layers.save(str(out), selected=True, plugin="napari-tumorseg") == [str(out)]
    (back,) = read_path(out)
    assert back.metadata["label_names"] == NAMES
    np.testing.assert_allclose(back.affine, truth.affine, atol=1e-6)
    # ... and into a TIFF (its JSON record), which reopens named in the window.
    tif = tmp_path / "saved.tif"
    assert viewer.layers.save(str(tif), selected=True, plugin="napari-tumorseg") == [str(tif)]
    (reopened,) = viewer.open(str(tif), plugin="napari-tumorseg")
    assert type(reopened).__name__ == "Labels" and reopened.metadata["label_names"] == NAMES
    np.testing.assert_array_equal(np.asarray(reopened.data), truth.data)


def test_file_open_refuses_a_cut_metaimage_in_one_line(make_napari_viewer, shared_data, tmp_path):
    from napari.utils.notifications import notification_manager

    whole = (shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.mha").read_bytes()
    cut = tmp_path / "cut.mha"
    cut.write_bytes(whole[: len(whole) // 2])
    viewer = make_napari_viewer()
    start = len(notification_manager.records)
    assert viewer.open(str(cut), plugin="napari-tumorseg") == []
    said = [str(n.message) for n in notification_manager.records[start:]]
    assert len(said) == 1 and said[0].startswith("cut.mha: truncated MetaImage file") and "\n" not in said[0]
    assert str(tmp_path) not in said[0] and len(viewer.layers) == 0


def test_load_study_lists_and_opens_nrrd_with_names(make_napari_viewer, qtbot, shared_data, tmp_path):
    folder, truth = make_case(shared_data, tmp_path / "BraTS2021_00002")
    viewer = make_napari_viewer()
    widget = add_dock(viewer, "Load study")
    widget.picker.set_path(folder)
    widget.scan()
    rows = {widget.table.item(r, 0).text(): r for r in range(widget.table.rowCount())}
    assert set(rows) == {"BraTS2021_00002_flair", "BraTS2021_00002_seg"}
    assert widget.table.item(rows["BraTS2021_00002_seg"], 5).text() == "mask (labels)"
    assert widget.table.item(rows["BraTS2021_00002_seg"], 0).checkState() == Qt.Unchecked
    widget.table.item(rows["BraTS2021_00002_seg"], 0).setCheckState(Qt.Checked)
    worker = widget.open_selected()
    wait_for_worker(qtbot, worker, timeout=120000)
    assert [(type(l).__name__, l.name) for l in viewer.layers] == [
        ("Image", "FLAIR · BraTS2021_00002"), ("Labels", "seg · BraTS2021_00002")]
    labels = viewer.layers["seg · BraTS2021_00002"]
    assert labels.metadata["label_names"] == NAMES
    np.testing.assert_array_equal(np.asarray(labels.data), truth.data)
    np.testing.assert_allclose(labels.scale, viewer.layers["FLAIR · BraTS2021_00002"].scale)


def test_correct_dock_exports_a_slicer_segmentation_with_the_label_names(make_napari_viewer, shared_data,
                                                                          tmp_path):
    viewer = make_napari_viewer()
    folder, truth = make_case(shared_data, tmp_path / "BraTS2021_00002")
    (labels,) = viewer.open(str(folder / "BraTS2021_00002_seg.seg.nrrd"), plugin="napari-tumorseg")
    correct = add_dock(viewer, "Correct and export")
    correct.labels_combo.setCurrentText(labels.name)
    for text, out in (("NRRD / 3D Slicer (.seg.nrrd, .nrrd)", tmp_path / "edited.seg.nrrd"),
                      ("MetaImage (.mha, .mhd)", tmp_path / "edited.mha"),
                      ("TIFF stack (.tif)", tmp_path / "edited.tif")):
        correct.format_combo.setCurrentText(text)
        correct.export_picker.set_path(out)
        assert correct.export() == [out]
        (back,) = read_path(out)
        np.testing.assert_array_equal(back.data, truth.data)
        np.testing.assert_allclose(back.affine, truth.affine, atol=1e-6)
    for named in ("edited.seg.nrrd", "edited.tif"):
        (back,) = read_path(tmp_path / named)
        assert back.metadata["label_names"] == NAMES, named
    before = (tmp_path / "edited.mha").read_bytes()
    assert correct.export() == [] and (tmp_path / "edited.mha").read_bytes() == before  # no overwrite unasked
