"""Channel assembly: one rule for the CLI and the docks; a scan is never repeated to fill a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_tumorseg.channels import ChannelPlan, assemble_input, fit_channels, order_by_names
from napari_tumorseg.cli import main
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.io.readers import read_path
from napari_tumorseg.io.volume import Volume
from napari_tumorseg.models import create_model
from napari_tumorseg.models.checkpoint import save_checkpoint
from napari_tumorseg.training.preprocessing import default_preprocessing

CASE = "brats2013_deepmedic/validation/brats_2013_pat0003_1"


def _vol(name, value=0.0, shape=(2, 4, 4)):
    return Volume(np.full(shape, value, np.float32), name=name)


def test_order_by_names_matches_sequences_not_positions():
    t1c, flair = _vol("T1c_subtrMeanDivStd", 1), _vol("Flair_subtrMeanDivStd", 2)
    assert order_by_names([t1c, flair], ["FLAIR", "T1c"]) == [flair, t1c]


def test_order_by_names_names_the_missing_channel():
    with pytest.raises(TumorSegError, match="'T2'.*no scan"):
        order_by_names([_vol("FLAIR"), _vol("T1c")], ["FLAIR", "T2"])


def test_one_scan_is_never_repeated_for_a_multichannel_model():
    plan = ChannelPlan(4, ("FLAIR", "T1", "T1c", "T2"), "as_is")
    with pytest.raises(TumorSegError, match="needs 4 input channels"):
        fit_channels(np.zeros((1, 2, 4, 4), np.float32), plan)
    with pytest.raises(TumorSegError, match="'T1'"):
        assemble_input(_vol("FLAIR"), [], plan)


def test_repeat_only_when_the_model_was_trained_that_way():
    out = fit_channels(np.ones((1, 2, 4, 4), np.float32), ChannelPlan(3, (), "repeat"))
    assert out.shape == (3, 2, 4, 4)


def test_assemble_input_stacks_the_named_scans_in_checkpoint_order():
    plan = ChannelPlan(2, ("FLAIR", "T1c"))
    flair, t1c, t2 = _vol("case FLAIR", 1), _vol("case T1c", 2), _vol("case T2", 3)
    case = assemble_input(t1c, [t2, flair], plan)
    assert case.data.shape == (2, 2, 4, 4)
    assert case.data[0].max() == 1 and case.data[1].max() == 2


def test_assemble_input_refuses_scans_on_another_grid():
    plan = ChannelPlan(2, ("FLAIR", "T1c"))
    with pytest.raises(TumorSegError, match="not on the grid"):
        assemble_input(_vol("FLAIR"), [_vol("T1c", shape=(2, 5, 4))], plan)


@pytest.fixture(scope="module")
def two_channel_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("unet", in_channels=2, out_channels=1, width=4)
    prep = default_preprocessing(2, [48, 48], 2, "binary")
    prep.update(normalize="zscore", channel_names=["FLAIR", "T1c"], class_names=["background", "tumour"])
    path = tmp_path_factory.mktemp("ckpt") / "unet2.pt"
    save_checkpoint(path, model.eval(), model_name="unet", config={"width": 4}, in_channels=2, out_channels=1,
                    preprocessing=prep, class_names=["background", "tumour"], history=[])
    return path


def test_cli_predict_on_a_brats_case_folder_stacks_flair_and_t1c(shared_data, two_channel_ckpt, tmp_path, capsys):
    """The most common 3D input: a case folder of NIfTI scans and a 2-channel checkpoint."""
    case = shared_data / CASE
    out = tmp_path / "seg.nii.gz"
    rc = main(["predict", str(two_channel_ckpt), str(case), "-o", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    seg = read_path(out)[0]
    flair = read_path(case / "Flair_subtrMeanDivStd.nii.gz")[0]
    assert seg.spatial_shape == flair.spatial_shape


def test_cli_predict_refuses_a_case_without_the_models_channels(shared_data, two_channel_ckpt, tmp_path, capsys):
    out = tmp_path / "seg.nii.gz"
    rc = main(["predict", str(two_channel_ckpt), str(shared_data / CASE / "Flair_subtrMeanDivStd.nii.gz"),
               "-o", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "needs 2 input channels" in err
    assert not out.exists()


def test_a_multichannel_case_is_reordered_to_the_checkpoint():
    case = Volume(np.stack([np.full((2, 4, 4), 1.0), np.full((2, 4, 4), 2.0)]), name="case",
                  channel_names=["FLAIR", "T1c"])
    out = assemble_input(case, [], ChannelPlan(2, ("T1c", "FLAIR")))
    assert out.channel_names == ["T1c", "FLAIR"] and out.data[0].max() == 2.0
    with pytest.raises(TumorSegError, match="'T2'"):
        assemble_input(case, [], ChannelPlan(2, ("FLAIR", "T2")))


def test_a_case_with_more_sequences_gives_the_model_its_own():
    # All four BraTS sequences open; a FLAIR + T1c model reads those two, in its order.
    case = Volume(np.stack([np.full((2, 4, 4), float(v)) for v in range(4)]), name="case",
                  channel_names=["flair", "t1", "t1ce", "t2"])
    out = assemble_input(case, [], ChannelPlan(2, ("T1c", "FLAIR")))
    assert out.channel_names == ["t1ce", "flair"]
    assert [float(c.max()) for c in out.data] == [2.0, 0.0]
    assert fit_channels(out.data, ChannelPlan(2, ("T1c", "FLAIR"))).shape[0] == 2
    with pytest.raises(TumorSegError, match="'T1c'"):  # T1 alone is never taken for T1c
        assemble_input(Volume(case.data[:2], name="case", channel_names=["flair", "t1"]), [],
                       ChannelPlan(2, ("FLAIR", "T1c")))
