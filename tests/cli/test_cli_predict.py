"""``tumorseg predict`` on real data with a tiny U-Net trained here; exit codes and one-line errors."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
import torch.nn.functional as F

from napari_tumorseg.cli import main
from napari_tumorseg.io.readers import read_path
from napari_tumorseg.models import create_model
from napari_tumorseg.models.checkpoint import save_checkpoint
from napari_tumorseg.training.preprocessing import apply_preprocessing, default_preprocessing, preprocess_labels

BRATS_FLAIR = "brats2013_deepmedic/validation/brats_2013_pat0003_1/Flair_subtrMeanDivStd.nii.gz"



@pytest.fixture(scope="module")
def ckpt(shared_data, tmp_path_factory):
    """A width-4 U-Net briefly fitted to the BRAINIX FLAIR tumour (48x48 input)."""
    flair = read_path(shared_data / "dicom_brainix" / "FLAIR")[0].data
    roi = read_path(shared_data / "dicom_brainix" / "ROI")[0].data
    prep = default_preprocessing(2, [48, 48], 1, "binary")
    prep.update(normalize="zscore", class_names=["background", "tumour"])
    x = torch.from_numpy(apply_preprocessing(flair, prep)).permute(1, 0, 2, 3).contiguous()
    y = torch.from_numpy(preprocess_labels(roi, prep) > 0).float()[:, None]
    torch.manual_seed(0)
    model = create_model("unet", in_channels=1, out_channels=1, width=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(60):
        idx = torch.arange(step * 8, step * 8 + 8) % x.shape[0]
        logits = model(x[idx])
        p = logits.sigmoid()
        loss = F.binary_cross_entropy_with_logits(logits, y[idx]) + 1 - (2 * (p * y[idx]).sum() + 1) / (
            p.sum() + y[idx].sum() + 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # BatchNorm statistics of the final weights
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        model(x)
    path = tmp_path_factory.mktemp("ckpt") / "unet.pt"
    save_checkpoint(path, model.eval(), model_name="unet", config={"width": 4}, in_channels=1, out_channels=1,
                    preprocessing=prep, class_names=["background", "tumour"], history=[])
    return path


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_dicom_to_dicom_seg(ckpt, shared_data, tmp_path, capsys):
    flair_dir = shared_data / "dicom_brainix" / "FLAIR"
    out = tmp_path / "seg.dcm"
    code = main(["predict", str(ckpt), str(flair_dir), "-o", str(out), "--threshold", "0.5", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "labelled voxels" in captured.out and str(out) in captured.out
    seg = pydicom.dcmread(out)
    src = pydicom.dcmread(sorted(flair_dir.glob("*.dcm"))[0], stop_before_pixels=True)
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert "unet" in str(seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName)
    # The same run again is refused: the existing output is kept.
    before = out.read_bytes()
    assert main(["predict", str(ckpt), str(flair_dir), "-o", str(out), "--quiet"]) == 2
    assert "exists" in _err_line(capsys) and out.read_bytes() == before
    assert main(["predict", str(ckpt), str(flair_dir), "-o", str(out), "--quiet", "--overwrite"]) == 0


def test_nifti_with_probabilities(ckpt, shared_data, tmp_path, capsys):
    src = shared_data / BRATS_FLAIR
    out = tmp_path / "pred.nii.gz"
    code = main(["predict", str(ckpt), str(src), "-o", str(out), "--probabilities", "--batch-size", "32",
                 "--device", "cpu", "--quiet"])
    assert code == 0, capsys.readouterr().err
    prob_path = tmp_path / "pred_prob.nii.gz"
    labels, prob, ref = nib.load(out), nib.load(prob_path), nib.load(src)
    np.testing.assert_allclose(labels.affine, ref.affine, atol=1e-5)
    np.testing.assert_allclose(prob.affine, ref.affine, atol=1e-5)
    assert labels.shape == prob.shape == ref.shape
    p = np.asarray(prob.dataobj)
    assert p.dtype == np.float32 and 0 <= p.min() and p.max() <= 1
    np.testing.assert_array_equal(np.asarray(labels.dataobj), (p > 0.5).astype(np.uint8))
    # A stricter threshold labels fewer voxels.
    out2 = tmp_path / "strict.nii.gz"
    assert main(["predict", str(ckpt), str(src), "-o", str(out2), "--threshold", "0.9", "--quiet"]) == 0
    assert np.count_nonzero(np.asarray(nib.load(out2).dataobj)) == np.count_nonzero(p > 0.9)


def test_2d_jpg_to_tiff(ckpt, shared_data, tmp_path, capsys):
    import tifffile

    jpg = sorted((shared_data / "coco_ravirawal" / "valid").glob("*.jpg"))[0]
    out = tmp_path / "mask.tif"
    assert main(["predict", str(ckpt), str(jpg), "-o", str(out), "--probabilities", "--quiet"]) == 0
    mask = tifffile.imread(out)
    assert mask.shape == (640, 640) and set(np.unique(mask)) <= {0, 1}
    prob = tifffile.imread(tmp_path / "mask_prob.tif")
    assert prob.dtype == np.float32 and prob.shape == (640, 640)


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}", "{flair}", "-o", "{tmp}/a.nii.gz"], "not found"),
        (["{ckpt}", "{nifti}", "-o", "{tmp}/a.dcm"], "DICOM-SEG needs a DICOM input"),
        (["{ckpt}", "{nifti}", "-o", "{tmp}/a.nii.gz", "--format", "dicom-seg"], "DICOM-SEG needs a DICOM input"),
        (["{ckpt}", "{tmp}/nothing", "-o", "{tmp}/a.nii.gz"], "no such file"),
        (["{ckpt}", "{flair}", "-o", "{tmp}/a.nii.gz", "--threshold", "2"], "threshold"),
        (["{ckpt}", "{flair}", "-o", "{tmp}/a.nii.gz", "--series", "5"], "series 5 does not exist"),
        (["{ckpt}", "{flair}", "-o", "{tmp}/a.xyz"], "cannot tell the format"),
        (["{flair_file}", "{flair}", "-o", "{tmp}/a.nii.gz"], "not a readable checkpoint"),
    ],
)
def test_errors_are_one_line(ckpt, shared_data, tmp_path, capsys, args, message):
    flair = shared_data / "dicom_brainix" / "FLAIR"
    fill = {"missing": tmp_path / "missing.pt", "ckpt": ckpt, "flair": flair, "tmp": tmp_path,
            "nifti": shared_data / BRATS_FLAIR, "flair_file": sorted(flair.glob("*.dcm"))[0]}
    try:
        code = main(["predict", *[a.format(**fill) for a in args], "--quiet"])
    except SystemExit as exc:  # range errors (--threshold 2) are argparse's, at parse time
        code = exc.code
    line = _err_line(capsys)
    assert code == 2 and line.startswith("tumorseg predict: error:") and message in line
    assert not list(tmp_path.glob("a.*"))


def test_classifier_checkpoint_writes_json(shared_data, tmp_path, capsys):
    torch.manual_seed(0)
    names = ["glioma", "meningioma", "no tumour", "pituitary"]
    model = create_model("convnextv2", in_channels=3, out_channels=4, variant="atto")
    prep = default_preprocessing(2, [64, 64], 3, target="classes")
    prep.update(normalize="scale255", class_names=names)
    ck = tmp_path / "cls.pt"
    save_checkpoint(ck, model, model_name="convnextv2", config={"variant": "atto"}, in_channels=3,
                    out_channels=4, preprocessing=prep, class_names=names, history=[])
    jpg = sorted((shared_data / "coco_ravirawal" / "valid").glob("*.jpg"))[0]
    assert main(["predict", str(ck), str(jpg), "-o", str(tmp_path / "a.nii.gz")]) == 2
    assert "classifier" in _err_line(capsys)
    out = tmp_path / "cls.json"
    assert main(["predict", str(ck), str(jpg), "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["case"]["label"] in names and len(doc["slices"]) == 1
    assert abs(sum(doc["case"]["probabilities"].values()) - 1) < 1e-5
    assert doc["case"]["label"] in capsys.readouterr().out


def test_a_one_channel_model_takes_its_sequence_from_a_case_folder(ckpt, shared_data, tmp_path, capsys):
    """A model trained on FLAIR alone (`channels: [FLAIR]`) given a case folder of four
    sequences predicts on its FLAIR, as the docks pick it; one whose channel no scan matches
    still asks for --series."""
    from napari_tumorseg.io.nifti import read_nifti

    ck = torch.load(ckpt, weights_only=True)
    ck["preprocessing"] = {**ck["preprocessing"], "channel_names": ["FLAIR"]}
    flair_model = tmp_path / "flair.pt"
    torch.save(ck, flair_model)
    case = shared_data / "brats_multi_year" / "BraTS2021_00006"
    out = tmp_path / "pred.nii.gz"
    assert main(["predict", str(flair_model), str(case), "-o", str(out), "--quiet"]) == 0
    assert "BraTS2021_00006_flair" in capsys.readouterr().out
    assert read_nifti(out).data.shape == read_nifti(case / "BraTS2021_00006_flair.nii.gz").data.shape
    ck["preprocessing"]["channel_names"] = ["ADC"]
    torch.save(ck, flair_model)
    assert main(["predict", str(flair_model), str(case), "-o", str(tmp_path / "b.nii.gz"), "--quiet"]) == 2
    assert "choose one with --series N" in _err_line(capsys)
