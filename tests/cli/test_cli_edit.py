"""``tumorseg edit``: the Correct dock's whole-mask tools on saved masks, on real data."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_tumorseg import editing
from napari_tumorseg.cli import main
from napari_tumorseg.io.grid import check_same_grid
from napari_tumorseg.io.readers import read_path

BRATS2013 = ("brats2013_deepmedic", "train", "brats_2013_pat0005_1", "OTMultiClass.nii.gz")


def _fails(capsys, *args) -> str:
    code = main(["edit", *map(str, args)])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_grow_one_label_over_the_others_is_the_docks_edit(shared_data, tmp_path, capsys):
    """An enhancing rim grown 2 mm over core and oedema: the same voxels as the dock's tool,
    written on the source's grid (the NIfTI's affine and voxel order)."""
    src = shared_data.joinpath(*BRATS2013)
    out = tmp_path / "grown.nii.gz"
    assert main(["edit", str(src), "-o", str(out), "--border", "2", "--label", "4", "--over-other-labels"]) == 0
    text = capsys.readouterr().out
    assert "grew label 4 by 2 mm (3D)" in text and "voxels changed" in text
    (before,) = read_path(src)
    (after,) = read_path(out)
    expected = editing.margin(before.data, 2, before.spacing, value=4, overwrite=True).labels
    np.testing.assert_array_equal(after.data, expected)
    assert (after.data == 4).sum() > (before.data == 4).sum()
    assert check_same_grid(after, before) == ""
    np.testing.assert_allclose(nib.load(out).affine, nib.load(src).affine, atol=1e-5)
    # Without --over-other-labels the rim only takes background: fewer voxels, and it says why.
    assert main(["edit", str(src), "-o", str(tmp_path / "kept.nii.gz"), "--border", "2", "--label", "4"]) == 0
    assert "voxels of other labels kept" in capsys.readouterr().out
    (kept,) = read_path(tmp_path / "kept.nii.gz")
    assert (kept.data == 4).sum() < (after.data == 4).sum()
    assert np.array_equal(kept.data[before.data > 0] > 0, np.ones((before.data > 0).sum(), bool))
    np.testing.assert_array_equal(kept.data[(before.data > 0) & (before.data != 4)],
                                  before.data[(before.data > 0) & (before.data != 4)])


def test_six_mm_slices_grow_in_plane_and_land_on_the_scan(shared_data, tmp_path, capsys):
    """BRAINIX's ROI series (6 mm apart): 2 mm grows each slice's outline, adds no slice, and the
    result (NRRD) lies on the FLAIR series' grid."""
    roi_dir = shared_data / "dicom_brainix" / "ROI"
    out = tmp_path / "roi_grown.nrrd"
    assert main(["edit", str(roi_dir), "-o", str(out), "--border", "2"]) == 0
    capsys.readouterr()
    (roi,) = read_path(roi_dir)
    (grown,) = read_path(out)
    (flair,) = read_path(shared_data / "dicom_brainix" / "FLAIR")
    assert check_same_grid(grown, flair) == ""
    before, after = np.asarray(roi.data) > 0, np.asarray(grown.data) > 0
    assert after.sum() > before.sum() and after[before].all()
    np.testing.assert_array_equal(after.any(axis=(1, 2)), before.any(axis=(1, 2)))


def test_a_region_map_keeps_its_names_through_tiff(shared_data, tmp_path, capsys):
    """Fill holes and remove islands on a region map with names: the TIFF it writes reopens as
    a region map (what its values mean rides along)."""
    from napari_tumorseg.brats import REGION_LABEL_NAMES, labels_to_regions, regions_to_labels
    from napari_tumorseg.export import export_labels

    (truth,) = read_path(shared_data.joinpath(*BRATS2013))
    regionmap = regions_to_labels(labels_to_regions(truth.data, "brats"))
    regionmap[regionmap.shape[0] // 2, 5:7, 5:7] = 1  # a 4-voxel island far from the tumour
    src = tmp_path / "regions.nii.gz"
    export_labels(regionmap, "nifti", src, source=truth, names=REGION_LABEL_NAMES)
    out = tmp_path / "clean.tif"
    assert main(["edit", str(src), "-o", str(out), "--fill-holes", "--remove-islands", "10"]) == 0
    text = capsys.readouterr().out
    assert "filled" in text and "removed" in text
    (back,) = read_path(out)
    assert back.kind == "labels" and back.metadata["label_names"] == REGION_LABEL_NAMES
    assert back.data[regionmap.shape[0] // 2, 5:7, 5:7].max() == 0
    expected = editing.remove_islands(editing.fill_holes(regionmap).labels, 10, truth.spacing).labels
    np.testing.assert_array_equal(back.data, expected)


def test_bad_requests_get_one_line_and_leave_files_alone(shared_data, tmp_path, capsys):
    src = shared_data.joinpath(*BRATS2013)
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"the user's earlier export")
    assert "exists" in _fails(capsys, src, "-o", out, "--border", "1")
    assert out.read_bytes() == b"the user's earlier export"
    assert "nothing to do" in _fails(capsys, src, "-o", tmp_path / "a.nii.gz")
    assert "--border" in _fails(capsys, src, "-o", tmp_path / "b.nii.gz", "--label", "4", "--fill-holes")
    assert "non-zero" in _fails(capsys, src, "-o", tmp_path / "c.nii.gz", "--border", "0")
    flair = src.with_name("Flair_subtrMeanDivStd.nii.gz")
    assert "threshold it first" in _fails(capsys, flair, "-o", tmp_path / "d.nii.gz", "--border", "1")
    assert "output must end in" in _fails(capsys, src, "-o", tmp_path / "e.png", "--border", "1")
    assert not any(tmp_path.glob("[a-e].*"))
    err = _fails(capsys, src, "-o", tmp_path / "f.nii.gz", "--border", "1", "--label", "9")
    assert "--label 9: no such label" in err and "1, 2, 3, 4" in err
    assert "brats_2013" not in err and "OTMultiClass" not in err  # no file or patient named
    assert not (tmp_path / "f.nii.gz").exists()
