"""``tumorseg evaluate-clicks``: the robot on real BRAINIX, 2D images, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_tumorseg.cli import main
from napari_tumorseg.interactive import engines


def test_json_on_brainix_with_the_classic_engine(shared_data, capsys):
    code = main(["evaluate-clicks", str(shared_data / "dicom_brainix" / "FLAIR"),
                 str(shared_data / "dicom_brainix" / "ROI"), "--engine", "classic",
                 "--max-clicks", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["engine"] == "classic"
    assert len(out["dice_per_click"]) == 2 and len(out["seconds_per_click"]) == 2
    assert set(out["noc"]) == {"80", "85", "90"}
    assert all(1 <= n <= 2 for n in out["noc"].values())
    assert out["dice_per_click"][0] > 0.7  # as in tests/interactive/test_classic.py
    assert out["dice_at"]["1"] == out["dice_per_click"][0]
    assert "whole tumour" in out["gt_rule"]
    assert out["shape"] == [22, 288, 288]


def _png(path, array):
    Image.fromarray(array.astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture
def disc_2d(tmp_path):
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 40) ** 2 + (xx - 50) ** 2 <= 15 ** 2
    rng = np.random.default_rng(0)
    image = np.clip(90 + 100 * disc + rng.normal(0, 8, disc.shape), 0, 255)
    return _png(tmp_path / "scan.png", image), _png(tmp_path / "mask.png", disc * 255), tmp_path


def test_text_report_on_a_2d_png(disc_2d, capsys, monkeypatch):
    image, mask, _ = disc_2d
    # The automatic choice: classic when no starter model ships (an empty resources dir here).
    monkeypatch.setattr(engines, "RESOURCES", disc_2d[2])
    monkeypatch.setattr(engines.default_engine, "__defaults__", (disc_2d[2], False))
    assert main(["evaluate-clicks", image, mask, "--max-clicks", "3"]) == 0
    out = capsys.readouterr().out
    assert "Engine: classic engine (no starter click model" in out
    assert "Dice after 1 click:" in out and "NoC@80/85/90:" in out
    assert "Target: lesion" in out and "Drops (a click lowering Dice by > 0.05): 0" in out
    dice1 = float(out.split("Dice after 1 click: ")[1].split(",")[0])
    assert dice1 > 0.9


@pytest.mark.parametrize("case", ["grid", "missing", "empty_gt", "bad_engine", "zero_clicks"])
def test_bad_input_is_one_line_and_non_zero(disc_2d, capsys, case):
    image, mask, tmp = disc_2d
    args = [image, mask]
    if case == "grid":
        args = [image, _png(tmp / "small.png", np.zeros((50, 50)) + 255)]
    elif case == "missing":
        args = [str(tmp / "nothing.nii.gz"), mask]
    elif case == "empty_gt":
        args = [image, _png(tmp / "empty.png", np.zeros((96, 96)))]
    elif case == "bad_engine":
        (tmp / "junk.pt").write_bytes(b"not a checkpoint")
        args += ["--engine", str(tmp / "junk.pt")]
    elif case == "zero_clicks":
        args += ["--max-clicks", "0"]
    code = main(["evaluate-clicks", *args])
    err = capsys.readouterr().err
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("tumorseg evaluate-clicks: error:")


def test_a_case_folder_and_a_brats_target(shared_data, capsys):
    """A BraTS 2023 case folder (every sequence a channel) and --target enhancing: label 3 of
    that edition, not label 4; drops are reported."""
    case = shared_data / "brats_multi_year" / "BraTS-GLI-00000-000"
    seg = case / "BraTS-GLI-00000-000-seg.nii.gz"
    code = main(["evaluate-clicks", str(case), str(seg), "--engine", "classic", "--target", "enhancing",
                 "--max-clicks", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["target"] == "enhancing" and "enhancing" in out["gt_rule"]
    assert len(out["channels"]) == 4 and out["channels_read"]
    assert out["n_drops"] == len(out["drops"])
    first = out["clicks"][0]["zyx"]
    from napari_tumorseg.io.readers import read_path

    assert read_path(seg)[0].data[tuple(first)] == 3  # the first click is on BraTS 2023's enhancing label


def test_a_lone_flair_is_answered_by_the_any_subset_model(shared_data, capsys):
    """The automatic engine on a lone FLAIR of an unseen case: the model widened to any
    subset answers (the FLAIR + T1c one cannot, the classic engine is the measured weaker),
    and the report names it; one click already gives most of the whole tumour."""
    case = shared_data / "brats_multi_year" / "BraTS2021_00006"
    code = main(["evaluate-clicks", str(case / "BraTS2021_00006_flair.nii.gz"),
                 str(case / "BraTS2021_00006_seg.nii.gz"), "--target", "whole", "--max-clicks", "1",
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["engine_used"] == "starter_click_brats_any.pt"
    assert out["channels_read"] == ["BraTS2021_00006_flair"]
    assert out["dice_at"]["1"] >= 0.8


@pytest.fixture(scope="module")
def starter_prediction(shared_data, tmp_path_factory):
    """`tumorseg predict starter` on a case neither the starter nor the click model saw: the
    Predict dock's automatic map (1 oedema, 2 core, 3 enhancing), written as NIfTI."""
    out = tmp_path_factory.mktemp("prior") / "regions.nii.gz"
    case = shared_data / "brats_multi_year" / "BraTS2021_00006"
    assert main(["predict", "starter", str(case), "-o", str(out), "--threads", "2", "--quiet"]) == 0
    return case, out


def test_the_robot_corrects_a_prediction_read_from_its_file(starter_prediction, capsys):
    """--prior: the clicks start from the prediction's core, read in the file's own convention.
    The file's values (1, 2, 3) read as BraTS 2013-2021 labels would make its oedema the core;
    the names the export carries say they are a region map."""
    from napari_tumorseg.brats import labels_to_regions
    from napari_tumorseg.interactive.robot import dice
    from napari_tumorseg.io.readers import read_path

    case, prior = starter_prediction
    seg = case / "BraTS2021_00006_seg.nii.gz"
    code = main(["evaluate-clicks", str(case), str(seg), "--prior", str(prior), "--target", "core",
                 "--max-clicks", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["prior"] == str(prior)
    pred = np.asarray(read_path(prior)[0].data)
    truth = labels_to_regions(np.asarray(read_path(seg)[0].data), "brats")[1]
    assert out["dice_prior"] == pytest.approx(dice(np.isin(pred, (2, 3)), truth), abs=1e-6)
    assert out["dice_prior"] > 0.8  # 0.87 measured (benchmarks/RESULTS_starter.md)
    assert out["n_drops"] == 0 and min(out["dice_per_click"]) >= out["dice_prior"] - 0.05
    # Told the other reading of the same values, the prior is its oedema and enhancing part.
    assert main(["evaluate-clicks", str(case), str(seg), "--prior", str(prior), "--target", "core",
                 "--prior-convention", "brats", "--max-clicks", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dice_prior"] < out["dice_prior"] - 0.3


def test_a_prior_on_another_grid_is_one_line(starter_prediction, disc_2d, capsys):
    image, mask, _ = disc_2d
    code = main(["evaluate-clicks", image, mask, "--prior", str(starter_prediction[1])])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "PRIOR and IMAGE are on different grids" in err
