"""The end of a run decides, on its validation cases, whether best.pt keeps only its largest
component (inference.postprocess), stores the choice, and prediction follows it."""

from __future__ import annotations

import numpy as np
import torch

from napari_tumorseg.inference import Predictor
from napari_tumorseg.inference import postprocess as pp
from napari_tumorseg.training import TrainConfig, train
from napari_tumorseg.training.events import DoneEvent


def test_a_run_stores_its_choice_and_the_predictor_applies_it(shared_data, tmp_path):
    cfg = TrainConfig(model="unet", data=shared_data / "brats2013_deepmedic", out_dir=str(tmp_path),
                      epochs=1, batch_size=8, size=48, tiny=True, seed=1, recipe="paper",
                      augmentation=False)
    evs = list(train(cfg))
    done = evs[-1]
    assert isinstance(done, DoneEvent), done
    choice = done.postprocessing
    assert choice is not None and choice["cases"] == 2  # the folder's validation pair
    assert choice["rule"] in pp.RULES
    assert (choice["rule"] == pp.LARGEST) == (choice["dice_rule"] > choice["dice_raw"])
    ckpt = torch.load(tmp_path / "best.pt", map_location="cpu", weights_only=True)
    assert ckpt["extra"]["postprocessing"] == choice

    # The Predictor reads it; with the rule, a map with an island keeps the largest part.
    ckpt["extra"]["postprocessing"] = {**choice, "rule": pp.LARGEST}
    torch.save(ckpt, tmp_path / "largest.pt")
    predictor = Predictor.from_checkpoint(tmp_path / "largest.pt", device="cpu")
    assert predictor.cleanup == pp.DESCRIPTIONS[pp.LARGEST]
    labels = np.zeros((5, 20, 20), np.uint8)
    labels[1:4, 2:9, 2:9] = 1
    labels[2, 15:17, 15:17] = 1
    cleaned, n = predictor.clean(labels)
    assert n == 1 and cleaned[2, 15, 15] == 0 and cleaned[2, 5, 5] == 1
    ckpt["extra"]["postprocessing"] = {**choice, "rule": pp.NONE}
    torch.save(ckpt, tmp_path / "none.pt")
    plain = Predictor.from_checkpoint(tmp_path / "none.pt", device="cpu")
    assert plain.cleanup == "" and plain.clean(labels)[1] == 0

    # The CLI: one component with the rule (and says how many went); the flag keeps them all.
    from scipy import ndimage as ndi

    from napari_tumorseg.cli import main
    from napari_tumorseg.io.nifti import read_nifti

    case = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
    out, raw_out = tmp_path / "one.nii.gz", tmp_path / "all.nii.gz"
    assert main(["predict", str(tmp_path / "largest.pt"), str(case), "-o", str(out), "--quiet",
                 "--threshold", "0.3"]) == 0
    assert main(["predict", str(tmp_path / "largest.pt"), str(case), "-o", str(raw_out), "--quiet",
                 "--threshold", "0.3", "--keep-all-components"]) == 0
    one = np.asarray(read_nifti(out).data) > 0
    every = np.asarray(read_nifti(raw_out).data) > 0
    n_one = ndi.label(one, np.ones((3, 3, 3), bool))[1]
    n_all = ndi.label(every, np.ones((3, 3, 3), bool))[1]
    assert n_one == min(n_all, 1) and np.array_equal(one, one & every)
