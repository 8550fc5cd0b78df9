"""NIfTI reading and writing on real BraTS volumes."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from napari_tumorseg.errors import ReadError, WriteError
from napari_tumorseg.export.nifti import write_nifti
from napari_tumorseg.io.nifti import guess_sequence, read_nifti


@pytest.fixture(scope="module")
def brats12(shared_data):
    return shared_data / "brats2012_hg0015"


def _world(affine, ijk):
    return (np.asarray(affine) @ np.append(np.asarray(ijk, float), 1.0))[:3]


def test_brats2012_geometry_matches_nibabel(brats12):
    path = brats12 / "BRATS_HG0015_FLAIR.nii.gz"
    vol = read_nifti(path)
    img = nib.load(str(path))
    raw = np.asarray(img.dataobj)
    assert vol.kind == "image" and vol.modality == "MR"
    assert vol.data.shape == raw.shape[::-1] == (176, 216, 160)
    assert vol.data.dtype == np.int16
    assert vol.spacing == (1.0, 1.0, 1.0)
    # Every voxel (z, y, x) is nibabel's (i, j, k) = (x, y, z), at the same RAS position.
    for i, j, k in [(0, 0, 0), (159, 0, 0), (0, 215, 0), (0, 0, 175), (80, 100, 90), (159, 215, 175)]:
        assert vol.data[k, j, i] == raw[i, j, k]
        np.testing.assert_allclose(_world(vol.affine, (k, j, i)), _world(img.affine, (i, j, k)))
    np.testing.assert_allclose(vol.affine[:3, 3], [76.9940033, 135.42399597, -90.20480347], atol=1e-5)


def test_truth_is_labels_on_the_image_grid(brats12):
    image = read_nifti(brats12 / "BRATS_HG0015_T1C.nii.gz")
    truth = read_nifti(brats12 / "BRATS_HG0015_truth.nii.gz")
    assert truth.kind == "labels"
    assert truth.data.shape == image.data.shape
    np.testing.assert_array_equal(truth.affine, image.affine)
    assert set(np.unique(truth.data)) == {0, 1, 2}
    # The tumour lies inside the head: the labelled voxels are not background in T1c.
    assert np.median(image.data[truth.data > 0]) > np.median(image.data[image.data > 0]) * 0.5


def test_brats2013_float_label_maps(shared_data):
    case = shared_data / "brats2013_deepmedic" / "train" / "brats_2013_pat0005_1"
    labels = read_nifti(case / "OTMultiClass.nii.gz")  # stored as float32
    assert labels.kind == "labels" and labels.data.dtype == np.uint8
    assert set(np.unique(labels.data)) <= {0, 1, 2, 3, 4} and labels.data.max() > 0
    mask = read_nifti(case / "brainmask.nii.gz")  # int32 scaled by 2.3e-10 + 0.5
    assert mask.kind == "labels" and set(np.unique(mask.data)) == {0, 1}
    flair = read_nifti(case / "Flair_subtrMeanDivStd.nii.gz")
    assert flair.kind == "image" and flair.data.dtype == np.float32
    assert flair.data.shape == labels.data.shape == (155, 240, 240)
    np.testing.assert_array_equal(flair.affine, labels.affine)
    # z-scored inside the brain mask, zero outside
    assert abs(float(flair.data[mask.data == 1].mean())) < 0.2


@pytest.mark.parametrize("name", ["BRATS_HG0015_T1.nii.gz", "BRATS_HG0015_truth.nii.gz"])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_write_then_read_is_identical(brats12, tmp_path, name, suffix):
    vol = read_nifti(brats12 / name)
    out = write_nifti(vol, tmp_path / (name.replace(".nii.gz", "") + suffix))
    back = read_nifti(out)
    assert back.data.dtype == vol.data.dtype
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
    assert back.kind == vol.kind
    # And other tools see the same geometry as the original file.
    np.testing.assert_allclose(nib.load(str(out)).affine, nib.load(str(brats12 / name)).affine, atol=1e-6)


def test_oblique_affine_round_trip(brats12, tmp_path):
    vol = read_nifti(brats12 / "BRATS_HG0015_truth.nii.gz")
    theta = np.deg2rad(12.0)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    affine = vol.affine.copy()
    affine[:3, :3] = rot @ affine[:3, :3] @ np.diag([5.0, 0.8, 0.8])
    out = write_nifti(vol.data, tmp_path / "oblique.nii.gz", affine=affine)
    back = read_nifti(out)
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    np.testing.assert_allclose(back.spacing, (5.0, 0.8, 0.8), atol=1e-6)


def test_4d_nifti_opens_as_channels(brats12, tmp_path):
    flair = read_nifti(brats12 / "BRATS_HG0015_FLAIR.nii.gz")
    t2 = read_nifti(brats12 / "BRATS_HG0015_T2.nii.gz")
    stacked = np.stack([flair.data, t2.data])
    out = write_nifti(stacked, tmp_path / "case4d.nii.gz", affine=flair.affine)
    assert nib.load(str(out)).shape == (160, 216, 176, 2)
    back = read_nifti(out)
    assert back.has_channels and back.channel_names == ["0", "1"]
    np.testing.assert_array_equal(back.data, stacked)
    np.testing.assert_allclose(back.affine, flair.affine)


def test_write_never_clobbers(brats12, tmp_path):
    vol = read_nifti(brats12 / "BRATS_HG0015_truth.nii.gz")
    out = write_nifti(vol, tmp_path / "seg.nii.gz")
    before = out.read_bytes()
    with pytest.raises(WriteError, match="exists"):
        write_nifti(np.zeros((2, 3, 4), np.uint8), out)
    assert out.read_bytes() == before
    write_nifti(np.zeros((2, 3, 4), np.uint8), out, overwrite=True)
    assert read_nifti(out).data.shape == (2, 3, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.nii.gz"]  # no temp files left


def test_bad_output_name(tmp_path):
    with pytest.raises(WriteError, match="nii"):
        write_nifti(np.zeros((2, 3, 4)), tmp_path / "x.tif")


def test_damaged_files_give_one_line_errors(brats12, tmp_path):
    src = (brats12 / "BRATS_HG0015_T1.nii.gz").read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(src[: len(src) // 3])
    with pytest.raises(ReadError, match="cut.nii.gz") as info:
        read_nifti(cut)
    assert "\n" not in str(info.value)

    raw = gzip.decompress(src)
    short = tmp_path / "short.nii"
    short.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReadError, match="truncated"):
        read_nifti(short)

    noise = tmp_path / "noise.nii.gz"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ReadError, match="noise.nii.gz"):
        read_nifti(noise)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("BRATS_HG0015_FLAIR", "FLAIR"),
        ("BRATS_HG0015_T1C", "T1c"),
        ("BRATS_HG0015_T1", "T1"),
        ("BRATS_HG0015_T2", "T2"),
        ("BraTS-GLI-00001-000-t2f", "FLAIR"),
        ("BraTS-GLI-00001-000-t1n", "T1"),
        ("BraTS-GLI-00001-000-t1c", "T1c"),
        ("BraTS-GLI-00001-000-t2w", "T2"),
        ("T1c_subtrMeanDivStd", "T1c"),
        ("OTMultiClass", ""),
    ],
)
def test_sequence_names(name, expected):
    assert guess_sequence(name) == expected


def test_one_label_name_rule_for_files_folders_and_series(shared_data):
    from napari_tumorseg.io.nifti import is_label_name

    # Judged file by file, so a data folder that grows adds cases without breaking the rule.
    found = {p.name: is_label_name(p.name) for p in shared_data.rglob("*.nii*")}
    assert {"BRATS_HG0015_truth.nii.gz", "OTMultiClass.nii.gz", "brainmask.nii.gz"} <= {n for n, lab in found.items() if lab}
    for name, lab in found.items():
        stem = name.split(".")[0].lower()
        is_mask = stem.endswith(("seg", "truth", "multiclass", "brainmask"))
        assert lab == is_mask, name
    assert sum(not lab for lab in found.values()) >= 10  # the scans themselves stay scans
    assert all(is_label_name(n) for n in ("BraTS2021_00000_seg.nii.gz", "FLAIR_ROI", "tumourSeg.nii",
                                          "case_gt.nii", "Segmentation", "annotations_masks", "x_1_mask.tif"))
    assert not any(is_label_name(n) for n in ("t2_Regions.nii", "T2 TSE", "AX FLAIR", "imgs", "BRATS_HG0015_T1C"))


def test_label_names_and_colours_travel_with_a_label_map(brats12, tmp_path):
    """A region map written with its names reopens with them (and its colours, the background
    left see-through); another tool's comment extension is ignored."""
    from napari_tumorseg.brats import REGION_COLORS, REGION_LABEL_NAMES, convention_from_label_names

    vol = read_nifti(brats12 / "BRATS_HG0015_truth.nii.gz")
    truth = np.asarray(vol.data)  # 0 / 1 / 2 on the real 2012 grid
    out = tmp_path / "regions.nii.gz"
    write_nifti(truth, out, affine=vol.affine, intent="label",
                label_names=REGION_LABEL_NAMES, label_colors=REGION_COLORS)
    back = read_nifti(out)
    assert back.kind == "labels" and np.array_equal(back.data, truth)
    assert back.metadata["label_names"] == REGION_LABEL_NAMES
    assert convention_from_label_names(back.metadata["label_names"]) == "regionmap"
    assert back.metadata["label_colors"][2] == pytest.approx(REGION_COLORS[2][:3])
    cmap = back.layer_data()[1]["colormap"]
    assert cmap[0][3] == 0.0 and cmap[2][:3] == pytest.approx(REGION_COLORS[2][:3])

    img = nib.load(str(out))
    img.header.extensions.clear()
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"not json, another tool's note"))
    other = tmp_path / "other.nii.gz"
    nib.save(img, str(other))
    assert "label_names" not in read_nifti(other).metadata
