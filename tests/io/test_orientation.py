"""Radiological display order: every storage order opens as the same array at the same place."""

from __future__ import annotations

import nibabel as nib
import nibabel.orientations as nio
import numpy as np
import pytest

from napari_tumorseg.io.orientation import (
    WORLD_FROM_RAS,
    axis_codes,
    from_source_order,
    layer_geometry,
    to_display,
    to_source_order,
    world_from_index,
)
from napari_tumorseg.io.readers import describe, read_path
from napari_tumorseg.io.volume import Volume


def _rotation(axis: int, degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _marked(affine: np.ndarray, shape=(5, 6, 7)) -> tuple[Volume, np.ndarray]:
    data = np.zeros(shape, np.uint8)
    data[1, 2, 3] = 9
    return Volume(data, affine=affine), affine @ [1, 2, 3, 1]


def _affine_zyx(columns_ras: list[list[float]], origin=(10.0, -20.0, 30.0)) -> np.ndarray:
    """(z, y, x) -> RAS affine from the RAS direction of each index axis (times its step)."""
    a = np.eye(4)
    a[:3, :3] = np.array(columns_ras, float).T
    a[:3, 3] = origin
    return a


@pytest.mark.parametrize("columns, codes", [
    ([[0, 0, 2], [0, 1, 0], [1, 0, 0]], "SAR"),       # RAS file (nibabel i = x -> R)
    ([[0, 0, 2], [0, -1, 0], [-1, 0, 0]], "SPL"),     # LPS (BraTS, axial DICOM)
    ([[0, 0, 2], [0, 1, 0], [-1, 0, 0]], "SAL"),      # LAS
    ([[-1, 0, 0], [0, 0, -2], [0, -1, 0]], "LIP"),    # sagittal DICOM-like: slices along x
    ([[0, 3, 0], [0, 0, -1], [1, 0, 0]], "AIR"),      # coronal
])
def test_known_orientations_reach_the_display_order(columns, codes):
    vol, marker_ras = _marked(_affine_zyx(columns))
    assert axis_codes(vol.affine) == codes
    shown = to_display(vol)
    assert axis_codes(shown.affine) == "IPL"
    # Every index axis now points to I, P, L with a positive step: a pure scale in napari.
    m = WORLD_FROM_RAS @ shown.affine
    assert np.allclose(m[:3, :3], np.diag(np.diag(m[:3, :3]))) and np.all(np.diag(m[:3, :3]) > 0)
    # The marked voxel is still where it was in the scanner.
    idx = np.argwhere(shown.data == 9)[0]
    np.testing.assert_allclose(shown.affine @ [*idx, 1], marker_ras)
    assert sorted(shown.spacing) == sorted(vol.spacing)
    # And back to the file's order, voxel for voxel.
    back, src_affine = to_source_order(shown.data, shown)
    np.testing.assert_array_equal(back, vol.data)
    np.testing.assert_allclose(src_affine, vol.affine)
    np.testing.assert_array_equal(from_source_order(back, shown), shown.data)


def test_oblique_keeps_the_exact_affine_and_a_residual_rotation():
    rot = _rotation(0, 12.0) @ _rotation(2, -7.0)
    a = _affine_zyx([[0, 0, 1.5], [0, 0.8, 0], [0.8, 0, 0]])  # RAS order, tilted below
    a[:3, :3] = rot @ a[:3, :3]
    vol, marker_ras = _marked(a, shape=(9, 40, 50))
    shown = to_display(vol)
    idx = np.argwhere(shown.data == 9)[0]
    np.testing.assert_allclose(shown.affine @ [*idx, 1], marker_ras)  # the exact geometry stays

    # napari is given the whole tilt only on request ...
    full = layer_geometry(shown.affine, shown.spatial_shape, exact=True)
    r = full["affine"][:3, :3]
    world = r @ (np.array(full["scale"]) * idx + np.array(full["translate"]))
    np.testing.assert_allclose(world, (WORLD_FROM_RAS @ marker_ras)[:3])

    # ... by default the turn within the slice plane: every slice flat (napari's brush
    # paints the slice on screen), exact at the centre, within the tilt elsewhere.
    geo = layer_geometry(shown.affine, shown.spatial_shape)
    r = geo["affine"][:3, :3]
    assert np.allclose(r[0], [1, 0, 0]) and np.allclose(r[:, 0], [1, 0, 0])
    assert not np.allclose(r, np.eye(3))  # the in-plane turn (7 degrees) is applied
    place = lambda i: r @ (np.array(geo["scale"]) * np.asarray(i, float) + np.array(geo["translate"]))  # noqa: E731
    assert place((3, 0, 0))[0] == pytest.approx(place((3, 39, 49))[0])  # one depth per slice
    centre = (np.array(shown.spatial_shape) - 1) / 2
    np.testing.assert_allclose(place(centre), world_from_index(shown.affine, centre), atol=1e-9)
    corner = np.array(shown.spatial_shape) - 1
    off = np.linalg.norm(place(corner) - world_from_index(shown.affine, corner))
    radius = np.linalg.norm((corner - centre) * np.array(shown.spacing))
    assert off <= radius * np.sin(np.radians(12.5))


def test_axis_aligned_layers_need_no_napari_affine():
    vol = to_display(_marked(_affine_zyx([[0, 0, 2], [0, 1, 0], [1, 0, 0]]))[0])
    geo = layer_geometry(vol.affine)
    assert set(geo) == {"scale", "translate"}
    assert geo["scale"] == (2.0, 1.0, 1.0)


def test_no_geometry_images_are_shown_as_stored():
    img = Volume(np.arange(24).reshape(2, 3, 4))  # a TIFF/JPG stack: no header geometry
    shown = to_display(img)
    np.testing.assert_array_equal(shown.data, img.data)
    assert "affine" not in layer_geometry(shown.affine)


def _reoriented(img, codes: str):
    t = nio.ornt_transform(nio.io_orientation(img.affine), nio.axcodes2ornt(tuple(codes)))
    return img.as_reoriented(t)


def test_one_flair_in_four_storage_orders_opens_identically(shared_data, tmp_path):
    src = nib.load(shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.nii.gz")
    opened = []
    for codes in ("LPS", "RAS", "LAS", "PIR"):
        path = tmp_path / f"flair_{codes}.nii.gz"
        nib.save(_reoriented(src, codes), path)
        assert nib.aff2axcodes(nib.load(path).affine) == tuple(codes)
        (row,) = describe(path)
        (vol,) = read_path(path)
        assert list(vol.spatial_shape) == row["shape"]
        opened.append(vol)
    for vol in opened[1:]:
        np.testing.assert_array_equal(vol.data, opened[0].data)
        np.testing.assert_allclose(vol.affine, opened[0].affine, atol=1e-4)
        assert vol.layer_geometry()["translate"] == pytest.approx(opened[0].layer_geometry()["translate"])
    assert axis_codes(opened[0].affine) == "IPL"


@pytest.mark.parametrize("displayed, orientation, expected", [
    ((1, 2), ("down", "right"), ("A", "P", "R", "L")),   # axial
    ((0, 2), ("down", "right"), ("S", "I", "R", "L")),   # coronal
    ((0, 1), ("down", "right"), ("S", "I", "A", "P")),   # sagittal
    ((2, 1), ("down", "right"), ("R", "L", "A", "P")),   # axial, transposed
    ((1, 2), ("up", "right"), ("P", "A", "R", "L")),     # camera flipped vertically
    ((1, 2), ("down", "left"), ("A", "P", "L", "R")),    # camera flipped horizontally
])
def test_canvas_letters_follow_the_displayed_plane(displayed, orientation, expected):
    from napari_tumorseg.io.orientation import canvas_letters

    got = canvas_letters(displayed, orientation2d=orientation)
    assert (got["top"], got["bottom"], got["left"], got["right"]) == expected


def test_canvas_letters_from_a_layer_of_another_frame():
    """A layer whose world is plain RAS (x, y, z world axes): the letters still say where
    each edge points, from the layer's data->RAS and data->world maps."""
    from napari_tumorseg.io.orientation import canvas_letters

    vol = to_display(_marked(_affine_zyx([[0, 0, 2], [0, 1, 0], [1, 0, 0]]))[0])
    data_to_world = np.eye(4)  # a viewer showing the raw index grid
    world_to_ras = vol.affine @ np.linalg.inv(data_to_world)
    got = canvas_letters((1, 2), world_to_ras)
    assert (got["top"], got["left"]) == ("A", "R")
