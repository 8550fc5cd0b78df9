"""One FLAIR stored five ways (four NIfTI orders and a sagittal DICOM series) looks the same.

The radiological convention on screen whatever the storage order: the same pixels in the
canvas, the lesion at the same world position, and orientation letters that follow the
displayed plane. Screenshots go to TUMORSEG_SCREENSHOTS (or tmp) to be looked at.
"""

from __future__ import annotations

import nibabel as nib
import nibabel.orientations as nio
import numpy as np
import pytest

from napari_tumorseg._reader import napari_get_reader
from napari_tumorseg.io.orientation import WORLD_FROM_RAS, to_source_order
from napari_tumorseg.io.readers import read_path

pytestmark = pytest.mark.gui

ORDERS = ("LPS", "RAS", "LAS", "PIR")


def _reoriented(img, codes):
    t = nio.ornt_transform(nio.io_orientation(img.affine), nio.axcodes2ornt(tuple(codes)))
    return img.as_reoriented(t)


@pytest.fixture(scope="module")
def stored(shared_data, tmp_path_factory):
    """{name: (image path, truth path)}: the BraTS 2012 FLAIR and its truth, stored five ways."""
    from napari_tumorseg.io.dicom_write import write_dicom_series

    root = tmp_path_factory.mktemp("orders")
    src = shared_data / "brats2012_hg0015"
    flair, truth = (nib.load(src / f"BRATS_HG0015_{n}.nii.gz") for n in ("FLAIR", "truth"))
    out = {}
    for codes in ORDERS:
        paths = (root / f"flair_{codes}.nii.gz", root / f"truth_{codes}.nii.gz")
        nib.save(_reoriented(flair, codes), paths[0])
        nib.save(_reoriented(truth, codes), paths[1])
        out[codes] = paths
    # DICOM: sagittal slices (one file per x), rows running head to feet: the series
    # order of a sagittal acquisition, unlike any of the NIfTI files.
    (shown,) = read_path(out["LPS"][0])
    (shown_truth,) = read_path(out["LPS"][1])
    sag = np.ascontiguousarray(shown.data.transpose(2, 0, 1))  # (x, z, y)
    sag_truth = np.ascontiguousarray(shown_truth.data.transpose(2, 0, 1))
    affine = shown.affine[:, [2, 0, 1, 3]]
    write_dicom_series(sag.astype(np.int16), root / "dicom" / "FLAIR", affine=affine,
                       series_description="SAG FLAIR")
    write_dicom_series(sag_truth.astype(np.uint8), root / "dicom" / "ROI", affine=affine,
                       series_description="SAG FLAIR ROI")
    out["DICOM"] = (root / "dicom" / "FLAIR", root / "dicom" / "ROI")
    return out


def _open(viewer, path):
    reader = napari_get_reader(str(path))
    assert reader is not None
    for data, kwargs, kind in reader(str(path)):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer.layers[-1]


def _lesion_world(layer) -> np.ndarray:
    idx = np.argwhere(np.asarray(layer.data) > 0).mean(axis=0)
    return np.asarray(layer.data_to_world(idx))


def _slider_label(viewer) -> str:
    """The label napari puts beside the slider of the 2D view (the axis not on screen)."""
    (axis,) = viewer.dims.not_displayed
    return viewer.dims.axis_labels[axis]


def test_five_storage_orders_show_identically(make_napari_viewer, qtbot, stored, screenshot_dir):
    from napari_tumorseg.orientation_letters import install_orientation_letters

    shots, lesions, letters = {}, {}, {}
    for name, (image_path, truth_path) in stored.items():
        viewer = make_napari_viewer(show=True)
        viewer.window._qt_window.resize(900, 800)
        image = _open(viewer, image_path)
        truth = _open(viewer, truth_path)
        assert image.ndim == 3 and truth.__class__.__name__ == "Labels"
        overlay = install_orientation_letters(viewer)
        assert install_orientation_letters(viewer) is overlay  # once per viewer
        lesion = _lesion_world(truth)
        lesions[name] = lesion
        viewer.dims.point = tuple(lesion)  # the lesion's slice in every view
        viewer.reset_view()
        qtbot.wait(50)
        shot = viewer.screenshot(canvas_only=True, flash=False)
        shots[name] = shot
        letters[name] = overlay.text()
        assert _slider_label(viewer) == "axial", name  # whatever the file's storage order
        from skimage.io import imsave

        imsave(screenshot_dir / f"axial_{name}.png", shot, check_contrast=False)
        if name == "DICOM":
            viewer.window.screenshot(str(screenshot_dir / "axial_DICOM_window.png"), flash=False)
            viewer.dims.order = (1, 0, 2)  # coronal: z down the screen, x across
            qtbot.wait(50)
            assert overlay.text() == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
            assert _slider_label(viewer) == "coronal"
            viewer.window.screenshot(str(screenshot_dir / "coronal_DICOM_window.png"), flash=False)
            viewer.dims.order = (2, 0, 1)  # sagittal
            qtbot.wait(50)
            assert overlay.text() == {"top": "S", "bottom": "I", "left": "A", "right": "P"}
            assert _slider_label(viewer) == "sagittal"
            viewer.window.screenshot(str(screenshot_dir / "sagittal_DICOM_window.png"), flash=False)
            viewer.dims.ndisplay = 3
            assert set(overlay.text().values()) == {""}  # no single direction per edge in 3D
        viewer.close()

    ref = shots["LPS"]
    assert len(np.unique(ref.reshape(-1, ref.shape[-1]), axis=0)) > 50  # a real picture
    for name, shot in shots.items():
        assert shot.shape == ref.shape, name
        diff = np.abs(shot.astype(int) - ref.astype(int))
        assert diff.max() <= 1, (name, int(diff.max()), float(diff.mean()))
        np.testing.assert_allclose(lesions[name], lesions["LPS"], atol=0.05)
        assert letters[name] == {"top": "A", "bottom": "P", "left": "R", "right": "L"}


def test_anterior_is_up_and_right_is_left_in_the_data(stored):
    """The convention checked on the anatomy itself, not on our own arithmetic: the first
    rows of an axial slice are the most anterior in the scanner, the first columns the
    patient's right (RAS x largest)."""
    (vol,) = read_path(stored["RAS"][0])
    a = vol.affine
    ras_row0, ras_row_last = a @ [0, 0, 0, 1], a @ [0, vol.data.shape[1] - 1, 0, 1]
    assert ras_row0[1] > ras_row_last[1]  # row 0 anterior
    ras_col0, ras_col_last = a @ [0, 0, 0, 1], a @ [0, 0, vol.data.shape[2] - 1, 1]
    assert ras_col0[0] > ras_col_last[0]  # column 0 is the patient's right
    ras_z0, ras_z_last = a @ [0, 0, 0, 1], a @ [vol.data.shape[0] - 1, 0, 0, 1]
    assert ras_z0[2] > ras_z_last[2]  # slice 0 superior
    # and the file itself is written back in its own order
    back, src_affine = to_source_order(vol.data, vol)
    np.testing.assert_array_equal(back, np.asarray(nib.load(stored["RAS"][0]).dataobj).T)
    assert np.allclose(WORLD_FROM_RAS @ WORLD_FROM_RAS, np.eye(4))


def test_oblique_brainix_sits_in_its_tilted_plane(make_napari_viewer, qtbot, shared_data, screenshot_dir):
    """BRAINIX is tilted a few degrees: the residual rotation is napari's layer affine, the
    ROI series lands on the FLAIR, and napari's 'non-orthogonal slicing' notice stays out."""
    from napari.utils.notifications import notification_manager

    from napari_tumorseg.widgets.grid import layers_grid_reason
    from napari_tumorseg.orientation_letters import install_orientation_letters

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(900, 800)
    overlay = install_orientation_letters(viewer)
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    flair = _open(viewer, shared_data / "dicom_brainix" / "FLAIR")
    roi = _open(viewer, shared_data / "dicom_brainix" / "ROI")
    assert not np.allclose(flair.affine.affine_matrix, np.eye(4))  # the tilt is applied
    assert layers_grid_reason(roi, flair) == ""
    viewer.dims.point = tuple(_lesion_world(roi))
    viewer.reset_view()
    qtbot.wait(100)
    assert overlay.text() == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert not [n for n in seen if "orthogonal" in str(n.message)]
    # napari's brush maps the cursor through world_to_data: anywhere on the slice shown,
    # even at the edges of the field of view, it must hit that one slice.
    point = np.asarray(viewer.dims.point, float)
    z_shown = roi.world_to_data(point)[0]
    lo, hi = np.asarray(roi.extent.world)
    for y in (lo[1], hi[1]):
        for x in (lo[2], hi[2]):
            assert roi.world_to_data((point[0], y, x))[0] == pytest.approx(z_shown, abs=1e-6)
    viewer.window.screenshot(str(screenshot_dir / "brainix_oblique.png"), flash=False)


def test_file_open_alone_shows_the_letters(make_napari_viewer, shared_data):
    """No dock opened: the reader puts the letters on the canvas itself (no Qt, no widgets)."""
    viewer = make_napari_viewer()
    viewer.open(str(shared_data / "dicom_brainix" / "FLAIR"), plugin="napari-tumorseg")
    keys = [k for k in viewer.canvas.overlays if str(k).startswith("tumorseg_orientation_")]
    assert len(keys) == 4
    shown = {str(k).rsplit("_", 1)[1]: viewer.canvas.overlays[k].text for k in keys
             if viewer.canvas.overlays[k].visible}
    assert shown == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
