"""Issue 14: the Correct dock measures lesion by lesion and draws each one's two diameters."""

import numpy as np
import pytest
from qtpy.QtWidgets import QApplication

from tests.widgets.conftest import add_dock

pytestmark = pytest.mark.gui

SCALE = (4.0, 0.8, 0.6)  # anisotropic, as MR often is


def _two_blobs() -> np.ndarray:
    """A large ellipse-disc stack on slices 2-4 and a small disc on slices 6-7, far apart:
    two lesions whose joint extent (~150 mm) no single lesion has."""
    vol = np.zeros((9, 120, 300), np.uint8)
    yy, xx = np.mgrid[:120, :300]
    big = ((yy - 60) * 0.8 / 22.0) ** 2 + ((xx - 60) * 0.6 / 14.0) ** 2 <= 1
    small = ((yy - 50) * 0.8) ** 2 + ((xx - 240) * 0.6) ** 2 <= 8.0**2
    vol[2:5][:, big] = 1
    vol[6:8][:, small] = 1
    return vol


def _data_point(layer, z: int, yx) -> np.ndarray:
    world_z = layer.data_to_world((z, 0, 0))[0]
    return np.asarray(layer.world_to_data((world_z, *yx)), float)


def test_two_lesions_listed_and_their_diameters_drawn(make_napari_viewer):
    viewer = make_napari_viewer()
    vol = _two_blobs()
    labels = viewer.add_labels(vol, name="two blobs", scale=SCALE, translate=(-10.0, 5.0, -3.0))
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(labels.name)
    widget.measure()
    m = widget.last_measure
    assert m["n_lesions"] == 2

    rows = {widget.table.item(r, 0).text(): widget.table.item(r, 1).text() for r in range(widget.table.rowCount())}
    assert rows["Lesions"] == "2 (2 measurable, RANO)"
    assert "Lesion 1" in rows and "Lesion 2" in rows and "Lesion 3" not in rows
    big, small = m["lesions"]
    assert rows["Lesion 1"] == f"{big['volume_ml']:.2f} mL"
    assert rows["  lesion 2 longest × perpendicular"] == (
        f"{small['diameter_mm']:.1f} × {small['perpendicular_mm']:.1f} mm")
    # The case diameter is the large lesion's (44 mm tall), not a line across both.
    assert rows["Largest axial diameter"] == f"{big['diameter_mm']:.1f} mm"
    assert 42 < big["diameter_mm"] <= 44 and 26 < big["perpendicular_mm"] <= 28
    assert 14 < small["diameter_mm"] <= 16
    text = widget.table_text()
    assert len(text.splitlines()) == widget.table.rowCount() and "Lesion 2\t" in text
    widget.copy_button.click()
    assert QApplication.clipboard().text() == text

    # Two lines per lesion (longest, perpendicular), each on its lesion's slice, ends inside it.
    shapes = widget.diameter_layer
    assert type(shapes).__name__ == "Shapes"
    assert len(shapes.data) == 4 and list(shapes.shape_type) == ["line"] * 4
    # One label per lesion, on its longest diameter: both diameters, as a report quotes them.
    here = {t for t in shapes.features["text"] if t}
    assert list(shapes.features["label"])[1::2] == ["", ""]
    assert f"#1 {big['diameter_mm']:.1f} × {big['perpendicular_mm']:.1f} mm" in list(shapes.features["label"])
    assert len(here) == 1  # the other lesion's label is on its own slice only
    where = {1: vol[:5] > 0, 2: vol[5:] > 0}
    for i, (les, offset) in enumerate(((big, 0), (small, 5))):
        z = les["slice"]
        for j, key in enumerate(("diameter", "perpendicular")):
            line = np.asarray(shapes.data[2 * i + j])
            ends = np.array([_data_point(labels, z, p) for p in line])
            assert ends[:, 0] == pytest.approx([z, z])
            np.testing.assert_allclose(ends, np.asarray(les[f"{key}_endpoints"]), atol=1e-4)  # float32 shapes
            for f in np.linspace(0, 1, 21):  # convex blobs: the whole line lies in its lesion
                _, y, x = ends[0] + f * (ends[1] - ends[0])
                assert where[i + 1][z - offset, int(round(y)), int(round(x))]
            length = float(np.linalg.norm(line[1] - line[0]))
            assert length == pytest.approx(les[f"{key}_mm"], abs=1e-4)
        # 90 degrees on the screen (world mm).
        u, v = (np.diff(np.asarray(shapes.data[2 * i + k]), axis=0)[0] for k in (0, 1))
        assert abs(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v)) < 1e-4

    # The view went to the case diameter's slice: only that lesion's lines show there.
    here = int(round(float(labels.world_to_data(viewer.dims.point)[0])))
    assert here == big["slice"]
    assert list(shapes.shown) == [True, True, False, False]
    viewer.dims.set_current_step(0, small["slice"])
    assert list(shapes.shown) == [False, False, True, True]
    viewer.dims.set_current_step(0, 0)
    assert not shapes.shown.any()

    # Measuring again after removing the small lesion updates the same layer.
    labels.data = np.where(np.arange(9)[:, None, None] >= 5, 0, vol).astype(np.uint8)
    widget.measure()
    assert widget.diameter_layer is shapes and len(shapes.data) == 2
    rows = [widget.table.item(r, 0).text() for r in range(widget.table.rowCount())]
    assert "Lesion 1" in rows and "Lesion 2" not in rows


def test_brainix_roi_with_a_false_positive_is_two_lesions(make_napari_viewer, shared_data):
    """Real geometry (BRAINIX: 6 mm slices, an oblique series): the ROI plus a far blob."""
    from napari_tumorseg.widgets.correct import apply_edit
    from tests.widgets.test_predict_correct_widgets import _open_brainix

    viewer = make_napari_viewer()
    _, roi = _open_brainix(viewer, shared_data)
    original = np.asarray(roi.data).copy()
    z = int(np.argmax(original.sum(axis=(1, 2))))
    fp = original.copy()
    fp[z:z + 2, 20:30, 20:30] = 1
    apply_edit(roi, fp)
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(roi.name)
    widget.measure()
    m = widget.last_measure
    assert m["n_lesions"] == 2
    rows = {widget.table.item(r, 0).text(): widget.table.item(r, 1).text() for r in range(widget.table.rowCount())}
    # the 10 x 10 voxel blob (about 8 mm across) is listed, as RANO would not measure it
    assert rows["Lesions"] == "2 (1 measurable, RANO)" and "Lesion 2" in rows
    assert rows["  lesion 2 longest × perpendicular"].endswith("non-measurable (RANO)")
    assert not rows["  lesion 1 longest × perpendicular"].endswith("(RANO)")
    # The false positive is lesion 2 (smaller), measured on its own.
    assert m["lesions"][1]["voxel_count"] == 200
    assert m["lesions"][1]["diameter_mm"] == pytest.approx(9 * np.hypot(*roi.scale[1:]), rel=1e-6)
    assert m["largest_axial_diameter_mm"] == m["lesions"][0]["diameter_mm"]
    assert len(widget.diameter_layer.data) == 4


def test_two_lesions_on_a_single_image(make_napari_viewer):
    """A 2D labels layer (one slice): both lesions' lines drawn and always shown."""
    viewer = make_napari_viewer()
    vol = _two_blobs()
    img = vol[3] | vol[6]  # the large blob's slice and the small one's, as one image
    labels = viewer.add_labels(img, name="one slice", scale=SCALE[1:])
    widget = add_dock(viewer, "Correct and export")
    widget.labels_combo.setCurrentText(labels.name)
    widget.measure()
    assert widget.last_measure["n_lesions"] == 2
    shapes = widget.diameter_layer
    assert len(shapes.data) == 4 and shapes.shown.all()
    for k, les in enumerate(widget.last_measure["lesions"]):
        np.testing.assert_allclose(np.asarray(shapes.data[2 * k]), np.asarray(les["diameter_endpoints"])[:, 1:],
                                   atol=1e-4)


def test_a_brats_segmentation_named_by_its_edition_gets_its_regions(make_napari_viewer, shared_data):
    """`tumorseg view` of a BraTS 2021 case: Measure on its segmentation gives the whole
    tumour, core and enhancing volumes (the file's name says its convention: 4 = enhancing)."""
    from napari_tumorseg.brats import labels_to_regions
    from napari_tumorseg.cli.view import open_viewer

    viewer = open_viewer(str(shared_data / "brats_multi_year" / "BraTS2021_00006"),
                         viewer=make_napari_viewer())
    widget = next(w for name, w in viewer.window.dock_widgets.items() if name.startswith("Correct and export"))
    seg = viewer.layers["BraTS2021_00006_seg"]
    widget.labels_combo.setCurrentText(seg.name)
    widget.measure()
    regions = widget.last_measure["regions"]
    assert regions["convention"] == "brats"
    truth = labels_to_regions(np.asarray(seg.data), "brats")
    assert [regions[k]["voxel_count"] for k in ("WT", "TC", "ET")] == [int(m.sum()) for m in truth]
    assert "Enhancing tumour (ET)\t26.45 mL" in widget.table_text()
