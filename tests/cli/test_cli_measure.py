"""``tumorseg measure`` on real masks, and the prediction's lesions in ``tumorseg evaluate --json``."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_tumorseg.cli import main

BRATS2013 = ("brats2013_deepmedic", "train", "brats_2013_pat0005_1", "OTMultiClass.nii.gz")
BRATS2023 = ("brats_multi_year", "BraTS-GLI-00000-000", "BraTS-GLI-00000-000-seg.nii.gz")


def _json(capsys, *args) -> dict:
    assert main(["measure", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _fails(capsys, *args) -> str:
    code = main(["measure", *map(str, args)])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_measure_brainix_roi_json(shared_data, capsys):
    roi = shared_data / "dicom_brainix" / "ROI"
    out = _json(capsys, roi)
    # Spacing from the files (slice positions: 6 mm, not SliceThickness' 5).
    assert out["spacing_mm"][0] == pytest.approx(6.0, abs=1e-3)
    vv = float(np.prod(out["spacing_mm"])) / 1000
    assert out["voxel_count"] == 10482
    assert out["volume_ml"] == pytest.approx(10482 * vv, rel=1e-12)
    assert out["n_lesions"] == len(out["lesions"]) >= 1
    assert sum(les["voxel_count"] for les in out["lesions"]) == 10482
    top = out["lesions"][0]
    assert set(top) >= {"labels", "volume_ml", "voxel_count", "centroid_zyx", "slices", "slice",
                        "diameter_mm", "diameter_endpoints", "perpendicular_mm",
                        "perpendicular_endpoints", "product_mm2"}
    assert 0 < top["perpendicular_mm"] <= top["diameter_mm"] == out["largest_axial_diameter_mm"]
    assert "regions" not in out  # a binary ROI has none
    # The table says the same.
    assert main(["measure", str(roi)]) == 0
    text = capsys.readouterr().out
    assert f"Tumour volume: {out['volume_ml']:.3f} mL" in text
    assert f"{top['diameter_mm']:.1f}" in text and f"{top['perpendicular_mm']:.1f}" in text


def test_measure_brats2013_truth_regions(shared_data, capsys):
    path = shared_data.joinpath(*BRATS2013)
    labels = np.asarray(nib.load(path).dataobj).astype(np.uint8)
    vv = float(np.prod(nib.load(path).header.get_zooms())) / 1000
    out = _json(capsys, path, "--brats")
    r = out["regions"]
    assert r["convention"] == "brats"
    for name, values in (("WT", (1, 2, 3, 4)), ("TC", (1, 3, 4)), ("ET", (4,))):
        n = int(np.isin(labels, values).sum())
        assert r[name]["voxel_count"] == n
        assert r[name]["volume_ml"] == pytest.approx(n * vv, rel=1e-12)
    assert r["WT"]["voxel_count"] > r["TC"]["voxel_count"] > r["ET"]["voxel_count"] > 0
    assert out["n_lesions"] == len(out["lesions"]) == 9
    assert main(["measure", str(path), "--brats"]) == 0
    text = capsys.readouterr().out
    assert f"whole tumour (WT): {r['WT']['volume_ml']:.3f} mL" in text
    assert "enhancing tumour (ET)" in text and "lesion" in text
    # Without --brats: no regions.
    assert "regions" not in _json(capsys, path)
    # --label 4: the enhancing lesions alone.
    et = _json(capsys, path, "--label", "4")
    assert et["voxel_count"] == int((labels == 4).sum())
    assert all(les["labels"] == [4] for les in et["lesions"])


def test_measure_brats2023_needs_its_convention(shared_data, capsys, tmp_path):
    """Labels 1-3 without 4 are BraTS 2023's or 2013's: the 2023 file's own name says which;
    renamed, --brats asks for --convention."""
    path = shared_data.joinpath(*BRATS2023)
    labels = np.asarray(nib.load(path).dataobj)
    named = _json(capsys, path, "--brats")
    assert named["regions"]["convention"] == "brats2023"
    renamed = tmp_path / "mask.nii.gz"
    renamed.write_bytes(path.read_bytes())
    err = _fails(capsys, renamed, "--brats")
    assert "--convention" in err and "brats2023" in err
    out = _json(capsys, renamed, "--convention", "brats2023")
    assert out["regions"] == named["regions"]
    assert out["regions"]["ET"]["voxel_count"] == int((labels == 3).sum())
    assert out["regions"]["TC"]["voxel_count"] == int(np.isin(labels, (1, 3)).sum())


def test_measure_reads_a_saved_prediction_by_its_label_names(shared_data, capsys, tmp_path):
    """A region map saved by this plugin (1 oedema, 2 core, 3 enhancing) is measured as one
    with no option: the names it carries say so (its values alone would be refused)."""
    from napari_tumorseg.brats import REGION_COLORS, REGION_LABEL_NAMES, labels_to_regions, regions_to_labels
    from napari_tumorseg.export import export_labels
    from napari_tumorseg.io.readers import read_path

    truth = read_path(shared_data.joinpath(*BRATS2023))[0]
    regions = labels_to_regions(np.asarray(truth.data), "brats2023")
    out = tmp_path / "pred.nii.gz"
    export_labels(regions_to_labels(regions), "nifti", out, truth, names=REGION_LABEL_NAMES, colors=REGION_COLORS)
    for args in ((), ("--brats",)):
        r = _json(capsys, out, *args)["regions"]
        assert r["convention"] == "regionmap"
        assert [r[k]["voxel_count"] for k in ("WT", "TC", "ET")] == [int(m.sum()) for m in regions]


def test_measure_tiff_mask_takes_the_scan_spacing(shared_data, tmp_path, capsys):
    from napari_tumorseg.io.readers import read_path

    (roi,) = read_path(shared_data / "dicom_brainix" / "ROI")
    mask = tmp_path / "roi.tif"
    tifffile.imwrite(mask, np.asarray(roi.data).astype(np.uint8))
    flair = shared_data / "dicom_brainix" / "FLAIR"
    out = _json(capsys, mask, "--image", flair)
    assert out["spacing_mm"] == pytest.approx(list(roi.spacing), rel=1e-6)
    assert out["volume_ml"] == pytest.approx(np.count_nonzero(roi.data) * np.prod(roi.spacing) / 1000)
    err = _fails(capsys, mask, "--image", shared_data.joinpath(*BRATS2013))
    assert "differ in size" in err


def test_measure_bad_input_is_one_line(shared_data, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a mask\n")
    assert "no such file" in _fails(capsys, tmp_path / "missing.nii.gz")
    assert "unsupported file type" in _fails(capsys, text)
    scan = shared_data / "brats2013_deepmedic" / "train" / "brats_2013_pat0005_1" / "Flair_subtrMeanDivStd.nii.gz"
    err = _fails(capsys, scan)  # a z-scored FLAIR
    assert "non-integer" in err or "not a label mask" in err
    assert "no such label" in _fails(capsys, shared_data.joinpath(*BRATS2013), "--label", "7")
    binary = tmp_path / "binary_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)), binary)
    assert "binary mask" in _fails(capsys, binary, "--brats")
    # argparse's own errors are one line too.
    with pytest.raises(SystemExit) as exc:
        main(["measure", str(binary), "--convention", "brats1999"])
    assert exc.value.code != 0


def test_evaluate_json_has_the_prediction_lesions(shared_data, tmp_path, capsys):
    gt_path = shared_data / "brats2012_hg0015" / "BRATS_HG0015_truth.nii.gz"
    img = nib.load(gt_path)
    truth = np.asarray(img.dataobj).astype(np.uint8)
    pred = ndimage.binary_erosion(truth > 0, iterations=2).astype(np.uint8)
    far = np.zeros_like(pred)
    far[80:84, 10:16, 10:16] = 1  # a false positive far from the tumour: a second lesion
    pred = np.maximum(pred, far)
    pred_path = tmp_path / "pred.nii.gz"
    nib.save(nib.Nifti1Image(pred, img.affine), pred_path)
    assert main(["evaluate", str(pred_path), str(gt_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("dice", "hd95_mm", "pred_volume_ml", "gt_volume_ml"):  # kept
        assert key in out
    assert out["pred_n_lesions"] == len(out["pred_lesions"]) >= 2
    assert sum(les["voxel_count"] for les in out["pred_lesions"]) == int(np.count_nonzero(pred))
    assert out["pred_largest_axial_diameter_mm"] == max(les["diameter_mm"] for les in out["pred_lesions"])
    speck = [les for les in out["pred_lesions"] if les["voxel_count"] == far.sum()]
    assert len(speck) == 1 and speck[0]["diameter_mm"] < 10
    assert main(["evaluate", str(pred_path), str(gt_path)]) == 0
    assert "Predicted lesions:" in capsys.readouterr().out
