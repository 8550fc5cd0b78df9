"""``tumorseg info`` and ``tumorseg convert`` on real data, bad input included."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest

from napari_tumorseg.cli import main
from napari_tumorseg.io.readers import INFO_KEYS, read_path

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _info_json(path, capsys) -> list[dict]:
    assert main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_json_contract(shared_data, capsys):
    dicom = _info_json(shared_data / "dicom_brainix", capsys)
    nifti = _info_json(shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.nii.gz", capsys)
    lgg = _info_json(shared_data / "lgg_kaggle3m" / "TCGA_DU_A5TU_19980312", capsys)
    for rows in (dicom, nifti, lgg):
        for row in rows:
            assert set(row) == set(INFO_KEYS)
            assert row["kind"] in ("image", "labels")
            assert len(row["shape"]) == 3 and all(isinstance(s, int) for s in row["shape"])
            assert len(row["spacing"]) == 3 and all(s > 0 for s in row["spacing"])
            assert isinstance(row["modality"], str) and isinstance(row["source"], str)
            assert isinstance(row["n_files"], int) and row["n_files"] >= 1
    assert sorted(r["name"] for r in dicom) == ["FLAIR_ROI", "sT2/TSE/T", "sT2W/FLAIR"]
    flair = next(r for r in dicom if r["name"] == "sT2W/FLAIR")
    assert flair["shape"] == [22, 288, 288] and flair["n_files"] == 22 and flair["modality"] == "MR"
    assert nifti == [{
        "name": "BRATS_HG0015_FLAIR", "kind": "image", "shape": [176, 216, 160], "spacing": [1.0, 1.0, 1.0],
        "modality": "MR", "n_files": 1,
        "source": str(shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.nii.gz"), "channels": 1,
    }]
    n = len(list((shared_data / "lgg_kaggle3m" / "TCGA_DU_A5TU_19980312").glob("*_mask.tif")))
    assert [(r["kind"], r["shape"][0]) for r in lgg] == [("image", n), ("labels", n)]


def test_info_table(shared_data, capsys):
    assert main(["info", str(shared_data / "dicom_brainix")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["#", "name", "kind"]
    assert any("sT2W/FLAIR" in line and "22x288x288" in line and "labels" not in line for line in out)
    assert any("FLAIR_ROI" in line and "labels" in line for line in out)


def _ras_corners(ds) -> dict[tuple[int, int], np.ndarray]:
    """World (RAS) positions of a DICOM slice's corner pixels, from its own header."""
    ipp = np.array(ds.ImagePositionPatient, float)
    iop = np.array(ds.ImageOrientationPatient, float)
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    corners = {}
    for r in (0, ds.Rows - 1):
        for c in (0, ds.Columns - 1):
            lps = ipp + c * col_spacing * iop[:3] + r * row_spacing * iop[3:]
            corners[(r, c)] = lps * [-1, -1, 1]
    return corners


def test_convert_dicom_flair_to_nifti_keeps_voxels_and_world(shared_data, tmp_path, capsys):
    src = shared_data / "dicom_brainix"
    rows = _info_json(src, capsys)
    index = [r["name"] for r in rows].index("sT2W/FLAIR")
    out = tmp_path / "flair.nii.gz"
    assert main(["convert", str(src), "--series", str(index), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out

    img = nib.load(str(out))
    assert img.shape == (288, 288, 22)
    data = np.asarray(img.dataobj)  # (i, j, k) = (column, row, slice)
    files = sorted((src / "FLAIR").glob("*.dcm"))
    assert len(files) == 22
    used = set()
    for f in files:
        ds = pydicom.dcmread(f)
        corners = _ras_corners(ds)
        # which NIfTI slice k holds this file: the one whose (0, 0) voxel is at its origin
        origins = [img.affine @ [0, 0, k, 1] for k in range(22)]
        dist = [np.linalg.norm(o[:3] - corners[(0, 0)]) for o in origins]
        k = int(np.argmin(dist))
        assert dist[k] < 1e-3, f"{f.name}: no NIfTI slice at its ImagePositionPatient"
        used.add(k)
        for (r, c), ras in corners.items():
            np.testing.assert_allclose((img.affine @ [c, r, k, 1])[:3], ras, atol=1e-3)
        np.testing.assert_array_equal(data[:, :, k].T, ds.pixel_array)  # same voxels
    assert used == set(range(22))  # every slice once

    # and our own reader sees the same voxels and geometry as the DICOM load
    (back,) = read_path(out)
    (orig,) = read_path(src, series=index)
    np.testing.assert_array_equal(back.data, orig.data)
    np.testing.assert_allclose(back.affine, orig.affine, atol=1e-5)


def test_convert_refuses_to_overwrite(shared_data, tmp_path, capsys):
    src = shared_data / "brats2012_hg0015" / "BRATS_HG0015_truth.nii.gz"
    out = tmp_path / "truth.tif"
    assert main(["convert", str(src), "-o", str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["convert", str(src), "-o", str(out)]) != 0
    err = capsys.readouterr().err
    assert "exists" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before
    assert main(["convert", str(src), "-o", str(out), "--overwrite"]) == 0
    (back,) = read_path(out)
    assert back.data.shape == (176, 216, 160) and set(np.unique(back.data)) == {0, 1, 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truth.tif"]


def test_convert_needs_series_when_several(shared_data, tmp_path, capsys):
    out = tmp_path / "x.nii.gz"
    assert main(["convert", str(shared_data / "dicom_brainix"), "-o", str(out)]) != 0
    err = capsys.readouterr().err
    assert "--series" in err and "sT2W/FLAIR" in err
    assert not out.exists()
    assert main(["convert", str(shared_data / "dicom_brainix"), "--series", "7", "-o", str(out)]) != 0
    assert "series 7" in capsys.readouterr().err and not out.exists()


@pytest.fixture
def bad_inputs(shared_data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "readme.txt"
    text.write_text("no pixels here\n")
    src = (shared_data / "brats2012_hg0015" / "BRATS_HG0015_T1.nii.gz").read_bytes()
    garbled = tmp_path / "garbled.nii.gz"
    garbled.write_bytes(src[: len(src) // 4])
    not_coco = tmp_path / "settings.json"  # JSON, but not COCO (COCO files open as labels)
    not_coco.write_text('{"images": "none"}')
    return [not_coco, empty, garbled, text]


def test_bad_input_exits_with_one_line(bad_inputs, tmp_path, capsys):
    outdir = tmp_path / "out"
    for path in bad_inputs:
        assert main(["info", str(path)]) != 0
        captured = capsys.readouterr()
        assert captured.out == ""
        assert len(captured.err.strip().splitlines()) == 1, captured.err
        assert captured.err.startswith("tumorseg info: error:")
        out = outdir / f"{path.name}.nii.gz"
        assert main(["convert", str(path), "-o", str(out)]) != 0
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not outdir.exists() or not any(outdir.iterdir())  # nothing half-written


def test_info_on_a_text_file_named_dcm_says_not_a_dicom_file(tmp_path, capsys):
    path = tmp_path / "x.dcm"
    path.write_text("these are notes, not an image\n")
    assert main(["info", str(path)]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "tumorseg info: error: x.dcm: not a DICOM file"
    assert main(["convert", str(path), "-o", str(tmp_path / "o.nii.gz")]) != 0
    assert capsys.readouterr().err.strip() == "tumorseg convert: error: x.dcm: not a DICOM file"
    assert not (tmp_path / "o.nii.gz").exists()


def test_bad_input_in_a_real_process_has_no_traceback(bad_inputs, tmp_path):
    garbled = bad_inputs[2]
    out = tmp_path / "o.nii.gz"
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "napari_tumorseg.cli", "convert", str(garbled), "-o", str(out)],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "garbled.nii.gz" in proc.stderr
    assert not out.exists() and list(tmp_path.glob(".o.nii.gz*")) == []


@pytest.mark.parametrize("source", [
    "brats2012_hg0015/BRATS_HG0015_FLAIR.nii.gz",  # stored L-P-S: the display order flips z
    "brats_multi_year/BraTS2021_00002/BraTS2021_00002_flair.nii.gz",
    "brats2012_hg0015/BRATS_HG0015_truth.nii.gz",  # labels
])
def test_convert_nifti_to_nifti_keeps_the_voxel_order_and_affine(shared_data, tmp_path, capsys, source):
    """Issue 14: convert wrote the voxels in the display order: the same image in world space,
    but another array, unlike predict and the exports."""
    src = shared_data / source
    out = tmp_path / "out.nii.gz"
    assert main(["convert", str(src), "-o", str(out)]) == 0, capsys.readouterr().err
    before, after = nib.load(src), nib.load(out)
    assert after.shape == before.shape
    np.testing.assert_array_equal(np.asarray(after.dataobj), np.asarray(before.dataobj))
    np.testing.assert_allclose(after.affine, before.affine, atol=1e-5)
    assert nib.aff2axcodes(after.affine) == nib.aff2axcodes(before.affine)
    if "truth" in source:
        assert read_path(out)[0].kind == "labels" and int(after.header["intent_code"]) == 1002
    else:
        assert after.get_data_dtype() == before.get_data_dtype()


def test_convert_dicom_to_nifti_puts_every_voxel_where_the_series_had_it(shared_data, tmp_path, capsys):
    """The slice order of the series, and an affine that maps each voxel to its DICOM position."""
    src = shared_data / "dicom_brainix" / "FLAIR"
    out = tmp_path / "flair.nii.gz"
    assert main(["convert", str(src), "-o", str(out)]) == 0
    img = nib.load(out)
    data = np.asarray(img.dataobj)  # (column, row, slice)
    (shown,) = read_path(src)
    world_shown = shown.affine  # display order (z, y, x) -> RAS
    # Every voxel of the file, mapped by the file's affine, lands on a voxel of the series as
    # read, with the same value: corners and a few inner voxels of every slice.
    inverse = np.linalg.inv(world_shown)
    for k in range(data.shape[2]):
        for i, j in [(0, 0), (287, 0), (0, 287), (287, 287), (140, 100), (60, 200)]:
            ras = img.affine @ [i, j, k, 1]
            z, y, x = np.round(inverse @ ras)[:3].astype(int)
            np.testing.assert_allclose(inverse @ ras, [z, y, x, 1], atol=1e-3)
            assert data[i, j, k] == shown.data[z, y, x]
    # The series' own slice order (along its normal), as read before display: not flipped.
    from napari_tumorseg.io.orientation import to_source_order

    in_order, affine = to_source_order(shown.data, shown)
    np.testing.assert_array_equal(data, in_order.transpose(2, 1, 0))
    np.testing.assert_allclose(img.affine, affine[:, [2, 1, 0, 3]], atol=1e-4)
