"""NRRD (3D Slicer's .seg.nrrd included) and MetaImage through SimpleITK (issue 15): the
original BraTS 2012 .mha files read as their NIfTI copies do, round trips keep voxels and
the exact affine (an oblique DICOM series too), NRRD's ``space`` field is honoured, and
segment names survive."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_tumorseg.errors import ReadError, WriteError
from napari_tumorseg.export import export_labels
from napari_tumorseg.export.nrrd_mha import write_itk
from napari_tumorseg.io.dicom import DicomWarning
from napari_tumorseg.io.nrrd_mha import read_itk
from napari_tumorseg.io.orientation import to_source_order, world_from_index
from napari_tumorseg.io.readers import describe, read_path

HG0015 = "brats2012_hg0015"
BRATS21 = ("brats_multi_year", "BraTS2021_00002", "BraTS2021_00002_seg.nii.gz")
NAMES = {1: "necrotic core", 2: "oedema", 4: "enhancing tumour"}


def _one(path) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)
        (volume,) = read_path(path)
    return volume


def _corners(shape) -> list[tuple[int, int, int]]:
    return [(z, y, x) for z in (0, shape[0] - 1) for y in (0, shape[1] - 1) for x in (0, shape[2] - 1)]


@pytest.mark.parametrize("stem, kind", [("FLAIR", "image"), ("truth", "labels")])
def test_brats2012_metaimage_equals_its_nifti_copy(shared_data, stem, kind):
    mha = _one(shared_data / HG0015 / f"BRATS_HG0015_{stem}.mha")
    nii = _one(shared_data / HG0015 / f"BRATS_HG0015_{stem}.nii.gz")
    assert mha.kind == nii.kind == kind
    assert mha.data.dtype == nii.data.dtype and mha.data.shape == nii.data.shape == (176, 216, 160)
    np.testing.assert_array_equal(mha.data, nii.data)  # voxel for voxel, in the display order
    np.testing.assert_allclose(mha.affine, nii.affine, atol=1e-4)
    for index in _corners(mha.data.shape) + [(88, 108, 80)]:
        np.testing.assert_allclose(world_from_index(mha.affine, index), world_from_index(nii.affine, index),
                                   atol=1e-4)
    # The file's LPS origin (-76.994, -135.424, -90.2048) is RAS (76.994, 135.424, -90.2048).
    raw = read_itk(shared_data / HG0015 / f"BRATS_HG0015_{stem}.mha")
    np.testing.assert_allclose(raw.affine[:3, 3], [76.994, 135.424, -90.2048], atol=1e-4)
    if kind == "labels":
        assert set(np.unique(mha.data)) == {0, 1, 2}


def test_info_lists_the_metaimage_files_beside_the_nifti(shared_data):
    rows = {(Path(r["source"]).name, r["kind"], tuple(r["shape"])) for r in describe(shared_data / HG0015)}
    assert ("BRATS_HG0015_FLAIR.mha", "image", (176, 216, 160)) in rows
    assert ("BRATS_HG0015_truth.mha", "labels", (176, 216, 160)) in rows


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
@pytest.mark.parametrize("source", ["brats_nifti", "brainix_oblique_dicom"])
def test_round_trip_keeps_voxels_and_the_exact_affine(shared_data, tmp_path, suffix, source):
    path = (shared_data / HG0015 / "BRATS_HG0015_FLAIR.nii.gz" if source == "brats_nifti"
            else shared_data / "dicom_brainix" / "FLAIR")
    original = _one(path)
    if source == "brainix_oblique_dicom":  # tilted 4.4 degrees: a direction off the axes
        lin = original.affine[:3, :3] / np.linalg.norm(original.affine[:3, :3], axis=0)
        assert np.abs(lin).max(axis=0).min() < 0.999
    data, affine = to_source_order(original.data, original)
    out = write_itk(data, tmp_path / f"flair{suffix}", affine=affine)
    back = _one(out)
    assert back.data.dtype == original.data.dtype
    np.testing.assert_array_equal(back.data, original.data)
    np.testing.assert_allclose(back.affine, original.affine, atol=1e-6)
    if suffix == ".mhd":
        assert sorted(p.name for p in tmp_path.iterdir()) == ["flair.mhd", "flair.zraw"]


def _nrrd(path: Path, lines: list[str], data: np.ndarray) -> Path:
    header = "NRRD0004\n" + "\n".join(lines) + "\nencoding: gzip\nendian: little\n\n"
    path.write_bytes(header.encode() + gzip.compress(np.ascontiguousarray(data).tobytes()))
    return path


VOXELS = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # (k, j, i): i fastest on disk
DIRS = "space directions: (0.5,0,0) (0,0.7,0) (0,0,2)"


@pytest.mark.parametrize("space, sign", [
    ("right-anterior-superior", (1, 1, 1)), ("RAS", (1, 1, 1)),
    ("left-posterior-superior", (-1, -1, 1)), ("LPS", (-1, -1, 1)),
])
def test_nrrd_space_field_is_honoured(tmp_path, space, sign):
    path = _nrrd(tmp_path / "v.nrrd", ["type: short", "dimension: 3", "sizes: 6 5 4", f"space: {space}", DIRS,
                                       "space origin: (10,20,30)"], VOXELS)
    vol = read_itk(path)  # the file's own voxel order
    np.testing.assert_array_equal(vol.data, VOXELS)
    for k, j, i in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        ras = vol.affine @ [k, j, i, 1]
        expected = np.multiply(sign, [10 + 0.5 * i, 20 + 0.7 * j, 30 + 2 * k])
        np.testing.assert_allclose(ras[:3], expected, atol=1e-9)
    assert not vol.metadata.get("warnings")


def test_nrrd_without_space_is_taken_as_lps_and_says_so(tmp_path):
    path = _nrrd(tmp_path / "v.nrrd", ["type: short", "dimension: 3", "sizes: 6 5 4", "spacings: 0.5 0.7 2"], VOXELS)
    vol = read_itk(path)
    np.testing.assert_allclose(vol.affine @ [3, 4, 5, 1], [-2.5, -2.8, 6, 1])
    assert any("LPS assumed" in w for w in vol.metadata["warnings"])


def test_seg_nrrd_from_a_brats_truth_reopens_with_its_names(shared_data, tmp_path):
    truth = _one(shared_data.joinpath(*BRATS21))
    assert set(np.unique(truth.data)) == {0, 1, 2, 4}
    (out,) = export_labels(truth.data, None, tmp_path / "case.seg.nrrd", source=truth, names=NAMES)
    back = _one(out)
    assert back.kind == "labels" and back.metadata["label_names"] == NAMES
    np.testing.assert_array_equal(back.data, truth.data)
    np.testing.assert_allclose(back.affine, truth.affine, atol=1e-6)
    # 3D Slicer's segmentation fields, as Slicer writes them; no ITK bookkeeping.
    header = out.read_bytes().split(b"\n\n", 1)[0].decode()
    for n, (value, name) in enumerate(sorted(NAMES.items())):
        assert f"Segment{n}_Name:={name}" in header
        assert f"Segment{n}_LabelValue:={value}" in header
        assert f"Segment{n}_Layer:=0" in header
        assert f"Segment{n}_ID:=Segment_{value}" in header
        assert f"Segment{n}_Extent:=" in header and f"Segment{n}_Color:=" in header
    assert "Segmentation_MasterRepresentation:=Binary labelmap" in header
    assert "space: left-posterior-superior" in header and "kinds: domain domain domain" in header
    assert "encoding: gzip" in header and "ITK_" not in header
    # Exports never replace a file without being asked.
    with pytest.raises(WriteError, match="exists"):
        export_labels(truth.data, None, out, source=truth, names=NAMES)
    export_labels(truth.data, "mha", tmp_path / "case.mha", source=truth)
    np.testing.assert_array_equal(_one(tmp_path / "case.mha").data, truth.data)


def test_a_layered_slicer_segmentation_is_one_label_map(tmp_path):
    # Two layers (overlapping segments), both using label value 1: renumbered 1, 2; a voxel in
    # both segments takes the later one.
    layers = np.zeros((4, 5, 6, 2), np.uint8)  # (k, j, i, layer): the layer axis is fastest
    layers[1, 1:3, 1:4, 0] = 1
    layers[1, 2:4, 2:5, 1] = 1
    path = _nrrd(tmp_path / "two.seg.nrrd", [
        "type: unsigned char", "dimension: 4", "sizes: 2 6 5 4", "kinds: list domain domain domain",
        "space: left-posterior-superior", "space directions: none (1,0,0) (0,1,0) (0,0,1)",
        "space origin: (0,0,0)",
        "Segment0_ID:=a", "Segment0_Name:=tumour core", "Segment0_LabelValue:=1", "Segment0_Layer:=0",
        "Segment0_Color:=1 0 0",
        "Segment1_ID:=b", "Segment1_Name:=oedema", "Segment1_LabelValue:=1", "Segment1_Layer:=1",
    ], layers)
    vol = read_itk(path)
    assert vol.kind == "labels" and vol.metadata["label_names"] == {1: "tumour core", 2: "oedema"}
    assert vol.metadata["label_colors"] == {1: (1.0, 0.0, 0.0)}
    expected = np.zeros((4, 5, 6), np.uint8)
    expected[1, 1:3, 1:4] = 1
    expected[1, 2:4, 2:5] = 2
    np.testing.assert_array_equal(vol.data, expected)
    assert any("more than one segment" in w for w in vol.metadata["warnings"])


def test_the_napari_writers_save_nrrd_and_metaimage_in_place(shared_data, tmp_path):
    from napari_tumorseg._reader import read_layers
    from napari_tumorseg._writer import write_image_mha, write_labels_nrrd

    (image_layer,) = read_layers(str(shared_data / "dicom_brainix" / "FLAIR"))
    truth = _one(shared_data.joinpath(*BRATS21))
    data, kwargs, _ = truth.layer_data()
    meta = {**kwargs, "metadata": {**kwargs["metadata"], "label_names": NAMES}}
    (saved,) = write_labels_nrrd(str(tmp_path / "t.seg.nrrd"), data, meta)
    back = _one(saved)
    assert back.metadata["label_names"] == NAMES
    np.testing.assert_allclose(back.affine, truth.affine, atol=1e-6)
    data, kwargs, _ = image_layer
    (saved,) = write_image_mha(str(tmp_path / "flair.mha"), data, kwargs)
    flair = _one(shared_data / "dicom_brainix" / "FLAIR")
    back = _one(saved)
    np.testing.assert_array_equal(back.data, flair.data)
    np.testing.assert_allclose(back.affine, flair.affine, atol=1e-6)


def test_bad_names_and_arrays_are_refused_in_one_line(tmp_path):
    with pytest.raises(WriteError, match="must end in"):
        write_itk(np.zeros((2, 3, 4), np.uint8), tmp_path / "x.nhdr")
    with pytest.raises(WriteError, match="label map"):
        write_itk(np.zeros((2, 3, 4), np.float32), tmp_path / "x.seg.nrrd")
    with pytest.raises(ReadError, match="no such file"):
        read_itk(tmp_path / "missing.mha")


@pytest.mark.parametrize("name, header_type", [("case.seg.nrrd", b"type: unsigned char"),
                                               ("case.mha", b"ElementType = MET_UCHAR")])
def test_an_int64_label_map_is_stored_in_the_narrowest_type(shared_data, tmp_path, name, header_type):
    """napari's Labels hold int64: written as such, Slicer keeps eight bytes a voxel."""
    truth = _one(shared_data.joinpath(*BRATS21))
    wide = truth.data.astype(np.int64)
    (out,) = export_labels(wide, None, tmp_path / name, source=truth, names=NAMES)
    assert header_type in out.read_bytes()[:2000]
    back = _one(out)
    assert back.data.dtype == np.uint8
    np.testing.assert_array_equal(back.data, truth.data)
    # Big-endian int64 (a NumPy array read from some formats) is narrowed the same.
    (big,) = export_labels(wide.astype(">i8"), None, tmp_path / f"big_{name}", source=truth)
    assert _one(big).data.dtype == np.uint8
    # A value beyond uint8 takes the next type that holds it, never wraps.
    wide[wide == 4] = 300
    (out16,) = export_labels(wide, None, tmp_path / f"wide_{name}", source=truth)
    np.testing.assert_array_equal(_one(out16).data, wide)
