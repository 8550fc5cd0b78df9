"""``tumorseg predict starter CASE -o OUT``: the shipped model on a case folder it never saw."""

from __future__ import annotations

import numpy as np

from napari_tumorseg.brats import labels_to_regions
from napari_tumorseg.cli import main
from napari_tumorseg.io.nifti import read_nifti


def test_predict_starter_on_a_brats_2021_case_folder(shared_data, tmp_path, capsys):
    case = shared_data / "brats_multi_year" / "BraTS2021_00006"
    out = tmp_path / "regions.nii.gz"
    assert main(["predict", "starter", str(case), "-o", str(out), "--threads", "2", "--quiet"]) == 0
    said = capsys.readouterr().out
    pred = np.asarray(read_nifti(out).data)
    truth_vol = read_nifti(case / "BraTS2021_00006_seg.nii.gz")
    assert pred.shape == truth_vol.data.shape  # the source's grid and voxel order
    assert set(np.unique(pred)) == {0, 1, 2, 3}  # oedema, core, enhancing
    truth = labels_to_regions(np.asarray(truth_vol.data), "brats")
    mine = np.stack([pred > 0, np.isin(pred, (2, 3)), pred == 3])
    dice = [2 * (m & t).sum() / (m.sum() + t.sum()) for m, t in zip(mine, truth)]
    # What the README reports for this case (bench_starter.py), with a margin.
    assert dice[0] > 0.75 and dice[1] > 0.6 and dice[2] > 0.5, dice
    # Oedema without a core is dropped by default, and said; the flag keeps the model's map.
    from scipy import ndimage as ndi

    comp, n = ndi.label(pred > 0, np.ones((3, 3, 3), bool))
    assert n == len(set(np.unique(comp[pred >= 2])) - {0})
    dropped = int(said.split("dropped ")[1].split()[0])
    assert dropped > 5 and "--keep-all-components" in said  # 31 when measured
    raw_out = tmp_path / "raw.nii.gz"
    assert main(["predict", "starter", str(case), "-o", str(raw_out), "--threads", "2", "--quiet",
                 "--keep-all-components"]) == 0
    assert "dropped" not in capsys.readouterr().out
    raw = np.asarray(read_nifti(raw_out).data)
    comp, n = ndi.label(raw > 0, np.ones((3, 3, 3), bool))
    assert n - len(set(np.unique(comp[raw >= 2])) - {0}) == dropped
    assert np.array_equal(raw[pred > 0], pred[pred > 0])  # only whole islands went
    raw_wt = raw > 0
    assert dice[0] > 2 * (raw_wt & truth[0]).sum() / (raw_wt.sum() + truth[0].sum())
