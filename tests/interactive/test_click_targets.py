"""One click network for every region a radiologist measures: it is told the target (whole
tumour, core, enhancing) as constant planes beside the clicks, learns it from BraTS regions
in ``tumorseg train --interactive --regions``, and answers with that region's channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.interactive.encoding import ClickEncoding, ClickGuided
from napari_tumorseg.interactive.engines import segment_with_prompts
from napari_tumorseg.interactive.learned import LearnedEngine
from napari_tumorseg.interactive.prompts import Prompts
from napari_tumorseg.interactive.simulate import ClickSimulator

TARGETS = ("whole", "core", "enhancing")


def test_target_planes_are_one_hot_and_kept_in_the_config():
    enc = ClickEncoding(radius_mm=3.0, targets=TARGETS)
    assert enc.n_channels == 6
    maps = enc.maps((8, 8), (1.0, 1.0), [[4, 4]], [], None, target="core")
    assert maps.shape == (6, 8, 8)
    assert [float(maps[3 + k].mean()) for k in range(3)] == [0.0, 1.0, 0.0]
    # "lesion" (and no target) is the whole tumour for a regions network.
    assert enc.target_of("lesion") == "whole" and enc.target_of(None) == "whole"
    again = ClickEncoding.from_config(enc.to_config())
    assert again == enc and again.to_config()["channels"] == 6
    with pytest.raises(TumorSegError, match="unknown click target"):
        ClickEncoding(targets=("necrosis",))
    # A one-object network has no planes and ignores the target.
    plain = ClickEncoding()
    assert plain.n_channels == 3 and plain.maps((4, 4), (1, 1), [], [], target="core").shape == (3, 4, 4)


def test_image_only_input_is_told_the_whole_tumour():
    seen = {}

    class Probe(nn.Module):
        def forward(self, x):
            seen["x"] = x
            return x[:, :1]

    model = ClickGuided(Probe(), ClickEncoding(targets=TARGETS), 2)
    model(torch.zeros(1, 2, 4, 4))
    planes = seen["x"][0, 5:]  # after 2 image and 3 prompt channels
    assert planes.shape[0] == 3 and planes[0].min() == 1 and planes[1:].max() == 0


def test_simulated_clicks_fall_in_the_region_each_sample_is_told():
    # WT a large square, TC a small one inside it, ET a smaller one inside that.
    y = torch.zeros(3, 3, 48, 48)
    y[:, 0, 4:44, 4:44] = 1
    y[:, 1, 30:40, 30:40] = 1
    y[:, 2, 33:37, 33:37] = 1
    enc = ClickEncoding(radius_mm=1.0, min_radius_px=0.0, targets=TARGETS)
    sim = ClickSimulator(enc, iterations=0, no_click_fraction=0.0)
    x = torch.zeros(3, 2, 48, 48)
    xin, clicks = sim.batch_inputs(nn.Identity(), x, y, [None] * 3, [(1.0, 1.0)] * 3, train=False)
    assert xin.shape == (3, 2 + 6, 48, 48)
    for i, target in enumerate(TARGETS):  # validation cycles whole, core, enhancing
        (p,), _ = clicks[i]
        assert y[i, i, int(p[0]), int(p[1])] == 1, (target, p)
        assert float(xin[i, 5 + i].mean()) == 1.0 and float(xin[i, 5:].sum()) == 48 * 48
    # The core's click is in the core, not at the whole tumour's centre.
    assert 30 <= clicks[1][0][0][0] < 40


class _RegionPainter(nn.Module):
    """Channel k (WT, TC, ET) is bright where image channel k is: shows which channel the
    engine reads for a target."""

    def forward(self, x):
        return (x[:, :3] > 0.5).float() * 10 - 5


def _region_engine():
    model = ClickGuided(_RegionPainter(), ClickEncoding(radius_mm=1.0, min_radius_px=0.0, targets=TARGETS), 3)
    prep = {"dims": 2, "size": [32, 32], "spatial": "resize", "normalize": "none", "channels": 3,
            "target": "regions", "channel_names": ["FLAIR", "T1c", "T2"]}
    return LearnedEngine(model, {"model_name": "painter", "preprocessing": prep})


def test_the_engine_answers_with_the_region_of_the_target():
    shape = (1, 32, 32)
    image = np.zeros((3, *shape), np.float32)
    image[0, 0, 4:28, 4:28] = 1   # "WT"
    image[1, 0, 10:20, 10:20] = 1  # "TC"
    image[2, 0, 12:16, 12:16] = 1  # "ET"
    engine = _region_engine()
    click = Prompts(positive=[[0, 14, 14]])
    names = ["FLAIR", "T1c", "T2"]
    areas = {t: int(segment_with_prompts(engine, image, (1.0, 1.0, 1.0), click, target=t,
                                         channel_names=names).sum()) for t in TARGETS}
    assert areas == {"whole": 24 * 24, "core": 10 * 10, "enhancing": 4 * 4}
    assert engine.target == "enhancing"
    # Channels are matched by sequence, whatever order the case stores them in.
    shuffled = image[[2, 0, 1]]
    core = segment_with_prompts(engine, shuffled, (1.0, 1.0, 1.0), click, target="core",
                                channel_names=["T2", "FLAIR", "T1c"])
    assert int(core.sum()) == 100
    with pytest.raises(TumorSegError, match="no T1c"):
        segment_with_prompts(engine, image[[0, 2]], (1.0, 1.0, 1.0), click, target="core",
                             channel_names=["FLAIR", "T2"])


def test_interactive_regions_training_writes_a_target_aware_click_model(tmp_path, shared_data):
    from napari_tumorseg.training.engine import DoneEvent, TrainConfig, run_to_end

    cfg = TrainConfig.from_dict(dict(
        model="unet", data=str(shared_data / "brats2013_deepmedic"), out_dir=str(tmp_path / "run"),
        epochs=1, batch_size=4, size=64, tiny=True, threads=1, hd95=False, max_train_items=1,
        max_val_items=1, output="regions", interactive=True, click_iterations=1))
    events = run_to_end(cfg)
    done = [e for e in events if isinstance(e, DoneEvent)]
    assert done, events[-1]
    ckpt = torch.load(done[0].last_checkpoint, weights_only=True)
    assert ckpt["config"]["interactive"]["targets"] == list(TARGETS)
    assert ckpt["out_channels"] == 3 and ckpt["in_channels"] == 2
    engine = LearnedEngine.from_checkpoint(done[0].last_checkpoint)
    assert engine.encoding.targets == TARGETS
    image = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    masks = {t: segment_with_prompts(engine, image, (1.0, 1.0, 1.0), Prompts(positive=[[1, 32, 32]]),
                                     target=t, channel_names=["FLAIR", "T1c"]) for t in TARGETS}
    for t, m in masks.items():  # every target answers, and the click is in its answer
        assert m.shape == (3, 64, 64) and m[1, 32, 32], t
