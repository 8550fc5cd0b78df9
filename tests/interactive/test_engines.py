"""The automatic engine choice: the shipped starter click model when it loads, else classic."""

from __future__ import annotations

import pytest

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.interactive import engines
from napari_tumorseg.interactive.classic import ClassicEngine


def test_no_starter_means_classic_and_says_so(tmp_path):
    choice = engines.default_engine(tmp_path)
    assert isinstance(choice.engine, ClassicEngine)
    assert "no starter click model" in choice.reason


def test_an_unusable_starter_falls_back_to_classic_with_the_reason(tmp_path):
    (tmp_path / "starter_click_bad.pt").write_bytes(b"not a checkpoint")
    assert engines.starter_checkpoint(tmp_path).name == "starter_click_bad.pt"
    choice = engines.default_engine(tmp_path)
    assert isinstance(choice.engine, ClassicEngine)
    assert "starter_click_bad.pt unusable" in choice.reason


def test_the_shipped_starter_is_the_default_when_present():
    ckpt = engines.starter_checkpoint()
    if ckpt is None:
        pytest.skip("no starter click model ships in this checkout")
    choice = engines.default_engine()
    assert not isinstance(choice.engine, ClassicEngine)
    assert ckpt.name in choice.reason


def test_engine_from_name():
    assert isinstance(engines.engine_from_name("classic").engine, ClassicEngine)
    with pytest.raises(TumorSegError, match="no checkpoint"):
        engines.engine_from_name("/nonexistent/model.pt")


def test_a_volume_gets_the_classic_engine_when_only_the_2d_starter_ships(tmp_path):
    import shutil

    ckpt = engines.starter_checkpoint()
    if ckpt is None:
        pytest.skip("no starter click model ships in this checkout")
    shutil.copy(ckpt, tmp_path / ckpt.name)  # the image starter alone
    image = engines.default_engine(tmp_path)
    volume = engines.default_engine(tmp_path, volume=True)
    assert getattr(image.engine, "dims", 2) == 2 and not isinstance(image.engine, ClassicEngine)
    assert isinstance(volume.engine, ClassicEngine) and volume.reason == engines.VOLUME_REASON


def test_the_shipped_volume_model_segments_an_unseen_case_from_one_click(shared_data):
    """resources/starter_click_brats.pt on BraTS2021_00006 (never trained on): one click at
    the deepest point of each region gives that region, read from the case folder."""
    from napari_tumorseg.cli.evaluate_clicks import load_image
    from napari_tumorseg.interactive.prompts import Prompts
    from napari_tumorseg.interactive.robot import dice, next_click
    from napari_tumorseg.interactive.targets import target_truth
    from napari_tumorseg.io.readers import read_path

    assert engines.volume_starter_checkpoint() is not None, "no volume click model ships"
    choice = engines.default_engine(volume=True)
    assert not isinstance(choice.engine, ClassicEngine)
    case = shared_data / "brats_multi_year" / "BraTS2021_00006"
    ref, image, names = load_image(str(case), None)
    labels = read_path(case / "BraTS2021_00006_seg.nii.gz")[0].data
    import numpy as np

    for target, floor in (("whole", 0.85), ("core", 0.80), ("enhancing", 0.75)):
        gt = target_truth(labels, target, names=[case.name])
        point, positive = next_click(np.zeros(gt.shape, bool), gt, ref.spacing)
        assert positive
        mask = engines.segment_with_prompts(choice.engine, image, ref.spacing, Prompts(positive=[point]),
                                            target=target, channel_names=names)
        assert dice(mask, gt) >= floor, (target, dice(mask, gt))
    assert choice.engine.learned.target == "enhancing"  # the learned model answered, told the target


def _volume_starter(folder, names=("FLAIR", "T1c"), missing="refuse"):
    """A (tiny, untrained) click model for volumes in ``folder`` under the shipped name:
    FLAIR + T1c, BraTS regions, told the target."""
    from napari_tumorseg.interactive.encoding import TARGET_CHANNEL, ClickEncoding
    from napari_tumorseg.models import create_model, get_info
    from napari_tumorseg.models.checkpoint import save_checkpoint

    enc = ClickEncoding(targets=tuple(TARGET_CHANNEL)).to_config()
    config = {**get_info("unet").tiny_config, "interactive": enc}
    n = len(names)
    model = create_model("unet", in_channels=n, out_channels=3, **config)
    prep = {"dims": 2, "channels": n, "size": [32, 32], "spatial": "resize", "normalize": "robust",
            "channel_names": list(names), "target": "regions", "region_convention": "brats2021",
            "missing_channels": missing}
    save_checkpoint(folder / engines.VOLUME_STARTER, model, model_name="unet", config=config,
                    in_channels=n, out_channels=3, preprocessing=prep, class_names=["WT", "TC", "ET"],
                    history=[])


def test_a_volume_gets_the_volume_model_where_the_case_has_its_sequences(tmp_path):
    import numpy as np

    from napari_tumorseg.interactive.prompts import Prompts

    _volume_starter(tmp_path)
    # The image starter is another file: a volume model never answers single images.
    assert engines.starter_checkpoint(tmp_path) is None
    assert isinstance(engines.default_engine(tmp_path).engine, ClassicEngine)
    choice = engines.default_engine(tmp_path, volume=True)
    both = choice.engine
    assert engines.VOLUME_STARTER in choice.reason and "FLAIR + T1c" in choice.reason
    assert both.for_case(["T1c_case", "FLAIR_case"], 2) is both.learned  # matched by sequence
    assert both.for_case(["FLAIR"], 1) is both.classic  # a lone FLAIR: classic
    assert both.for_case(None, 2) is both.classic  # unnamed channels: classic
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 4, 32, 32)).astype(np.float32)
    click = Prompts(positive=[[2, 16, 16]])
    mask = engines.segment_with_prompts(both, image, (1.0, 1.0, 1.0), click, target="core",
                                        channel_names=["FLAIR", "T1c"])
    assert mask[2, 16, 16] and both.learned.target == "core"
    flair = engines.segment_with_prompts(both, image[:1], (1.0, 1.0, 1.0), click, target="whole",
                                         channel_names=["FLAIR"])
    assert flair[2, 16, 16] and both.learned.target == "core"  # the classic engine answered


def test_a_model_for_any_subset_of_sequences_takes_a_lone_flair(tmp_path):
    import numpy as np

    from napari_tumorseg.interactive.prompts import Prompts

    _volume_starter(tmp_path, ("FLAIR", "T1", "T1c", "T2"), missing="zeros")
    both = engines.default_engine(tmp_path, volume=True).engine
    assert "any of FLAIR, T1, T1c, T2" in both.name
    assert both.for_case(["FLAIR"], 1) is both.learned
    assert both.for_case(["T2_case", "T1c_case"], 2) is both.learned
    assert both.for_case(["DWI_b1000"], 1) is both.classic  # none of its sequences
    image = np.random.default_rng(1).normal(size=(1, 4, 32, 32)).astype(np.float32)
    mask = engines.segment_with_prompts(both, image, (1.0, 1.0, 1.0), Prompts(positive=[[2, 16, 16]]),
                                        target="whole", channel_names=["FLAIR"])
    assert mask[2, 16, 16] and both.learned.target == "whole"


def test_a_case_with_flair_or_t1c_alone_gets_the_any_subset_model(tmp_path):
    """The chain the robot measured: FLAIR + T1c model where the case has both, the model
    for any subset where it holds FLAIR or T1c alone, classic for the rest (a lone T2)."""
    import numpy as np

    from napari_tumorseg.interactive.prompts import Prompts
    from napari_tumorseg.precision import resolve

    _volume_starter(tmp_path)
    (tmp_path / "any").mkdir()
    _volume_starter(tmp_path / "any", ("FLAIR", "T1", "T1c", "T2"), missing="zeros")
    (tmp_path / "any" / engines.VOLUME_STARTER).rename(tmp_path / engines.VOLUME_ANY)
    assert engines.starter_checkpoint(tmp_path) is None  # neither is the single-image starter
    choice = engines.default_engine(tmp_path, volume=True)
    chain = choice.engine
    assert chain.fallback is not None and "measured best" in choice.reason
    assert chain.name == (f"{engines.VOLUME_STARTER} on FLAIR + T1c; {engines.VOLUME_ANY} on FLAIR or T1c "
                          "alone; else classic")
    assert chain.for_case(["FLAIR", "T1", "T1c", "T2"], 4) is chain.learned
    assert chain.for_case(["FLAIR"], 1) is chain.fallback
    assert chain.for_case(["T1c_case", "T2_case"], 2) is chain.fallback
    assert chain.for_case(["T2"], 1) is chain.classic
    assert chain.for_case(["T1", "T2"], 2) is chain.classic
    assert chain.for_case(None, 1) is chain.classic
    image = np.random.default_rng(2).normal(size=(1, 4, 32, 32)).astype(np.float32)
    mask = engines.segment_with_prompts(chain, image, (1.0, 1.0, 1.0), Prompts(positive=[[2, 16, 16]]),
                                        target="core", channel_names=["T1c"])
    assert mask[2, 16, 16] and chain.fallback.target == "core" and chain.learned.target is None
    chain.precision = resolve("fp32", "cpu")
    assert chain.learned.precision.name == chain.fallback.precision.name == "fp32"


def test_prepare_for_prompts_readies_the_case_the_first_click_reads(tmp_path):
    """The dock prepares a scan before its first click: the chain's model for the case
    normalises it then, and the click reuses that (no second normalisation); a case the
    classic engine answers has nothing to prepare."""
    import numpy as np

    from napari_tumorseg.interactive.prompts import Prompts

    _volume_starter(tmp_path)
    chain = engines.default_engine(tmp_path, volume=True).engine
    image = np.random.default_rng(1).normal(size=(3, 4, 32, 32)).astype(np.float32)
    names = ["T2", "T1c", "FLAIR"]  # more than the model reads, in another order
    assert chain.learned._norm is None
    assert engines.prepare_for_prompts(chain, image, names) is True
    prepared = chain.learned._norm
    # The model's channels, in its order (FLAIR, T1c), normalised.
    assert prepared.shape == (2, 4, 32, 32)
    assert chain.learned._grid_key == chain.learned._norm_key
    mask = engines.segment_with_prompts(chain, image, (1.0, 1.0, 1.0), Prompts(positive=[[2, 16, 16]]),
                                        target="whole", channel_names=names)
    assert mask[2, 16, 16]
    assert chain.learned._norm is prepared  # the click found the case prepared
    # A lone T2: the classic engine answers, and prepares nothing ahead.
    assert engines.prepare_for_prompts(chain, image[:1], ["T2"]) is False
