"""``tumorseg info`` / ``convert`` / ``predict`` with NRRD and MetaImage (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_tumorseg.cli import main
from napari_tumorseg.io.readers import read_path
from tests.cli.test_cli_predict import ckpt  # noqa: F401 - the tiny U-Net fixture

HG0015 = "brats2012_hg0015"


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_info_on_metaimage(shared_data, capsys):
    path = shared_data / HG0015 / "BRATS_HG0015_truth.mha"
    assert main(["info", str(path), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row == {"name": "BRATS_HG0015_truth", "kind": "labels", "shape": [176, 216, 160],
                   "spacing": [1.0, 1.0, 1.0], "modality": "", "n_files": 1, "source": str(path), "channels": 1}
    assert main(["info", str(shared_data / HG0015 / "BRATS_HG0015_FLAIR.mha")]) == 0
    assert "BRATS_HG0015_FLAIR  image" in capsys.readouterr().out


@pytest.mark.parametrize("out_name", ["flair.nrrd", "flair.mha", "flair.mhd", "flair.nii.gz"])
def test_convert_metaimage_to_every_geometry_format(shared_data, tmp_path, capsys, out_name):
    src = shared_data / HG0015 / "BRATS_HG0015_FLAIR.mha"
    out = tmp_path / out_name
    assert main(["convert", str(src), "-o", str(out)]) == 0, capsys.readouterr().err
    assert f"wrote {out}" in capsys.readouterr().out
    (a,), (b,) = read_path(src), read_path(out)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
    # Never replaced unasked; --overwrite replaces.
    before = out.read_bytes()
    assert main(["convert", str(src), "-o", str(out)]) == 2
    assert "exists" in _err_line(capsys) and out.read_bytes() == before
    assert main(["convert", str(src), "-o", str(out), "--overwrite"]) == 0


def test_convert_a_truth_to_a_slicer_segmentation_and_back(shared_data, tmp_path, capsys):
    truth = shared_data / HG0015 / "BRATS_HG0015_truth.nii.gz"
    seg = tmp_path / "truth.seg.nrrd"
    assert main(["convert", str(truth), "-o", str(seg)]) == 0
    capsys.readouterr()
    header = seg.read_bytes().split(b"\n\n", 1)[0].decode()
    assert "Segment0_LabelValue:=1" in header and "Segment1_LabelValue:=2" in header
    assert main(["info", str(seg), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["kind"] == "labels" and row["shape"] == [176, 216, 160]
    back = tmp_path / "back.nii.gz"
    assert main(["convert", str(seg), "-o", str(back)]) == 0
    (a,), (b,) = read_path(truth), read_path(back)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
    # The segments' names come back with the NIfTI (they say what each value is).
    assert b.metadata["label_names"] == read_path(seg)[0].metadata["label_names"]
    # An image is no segmentation.
    flair = shared_data / HG0015 / "BRATS_HG0015_FLAIR.mha"
    assert main(["convert", str(flair), "-o", str(tmp_path / "x.seg.nrrd")]) == 2
    assert "label map" in _err_line(capsys)


def test_predict_reads_metaimage_and_writes_a_slicer_segmentation(ckpt, shared_data, tmp_path, capsys):  # noqa: F811
    src = shared_data / HG0015 / "BRATS_HG0015_FLAIR.mha"
    out = tmp_path / "pred.seg.nrrd"
    code = main(["predict", str(ckpt), str(src), "-o", str(out), "--probabilities", "--batch-size", "32",
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    (scan,) = read_path(src)
    (labels,) = read_path(out)
    (prob,) = read_path(tmp_path / "pred_prob.nrrd")
    assert labels.kind == "labels" and labels.metadata["label_names"] == {1: "tumour"}
    np.testing.assert_allclose(labels.affine, scan.affine, atol=1e-5)
    np.testing.assert_allclose(prob.affine, scan.affine, atol=1e-5)
    np.testing.assert_array_equal(labels.data > 0, prob.data > 0.5)
    out2 = tmp_path / "pred.mha"
    assert main(["predict", str(ckpt), str(src), "-o", str(out2), "--quiet", "--batch-size", "32"]) == 0
    np.testing.assert_array_equal(read_path(out2)[0].data > 0, labels.data > 0)
    assert main(["predict", str(ckpt), str(src), "-o", str(tmp_path / "x.nii.gz"), "--format", "nrrd",
                 "--quiet"]) == 2
    assert ".nrrd" in _err_line(capsys)
