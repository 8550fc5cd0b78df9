"""Click-guided training (``--interactive``) on the real LGG slices: the simulated user
clicks inside the tumour (positive) and outside it (negative), and the checkpoint
reloads as a click-guided model with its encoding."""

import numpy as np
import pytest
import torch

from napari_tumorseg.interactive.encoding import ClickEncoding, ClickGuided
from napari_tumorseg.interactive.simulate import ClickSimulator, deep_point
from napari_tumorseg.models.checkpoint import load_checkpoint
from napari_tumorseg.training.engine import TrainConfig, run_to_end


@pytest.fixture(scope="module")
def lgg_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("interactive")
    cfg = TrainConfig(model="unet", data=str(shared_data / "lgg_kaggle3m"), out_dir=str(out),
                      tiny=True, interactive=True, click_encoding={"radius_mm": 4.0},
                      epochs=1, batch_size=8, size=64, threads=1, hd95=False,
                      empty_slice_fraction=0.0, recipe="paper")
    events = run_to_end(cfg)
    return cfg, events, out


def test_training_with_clicks_runs_and_reloads_as_interactive(lgg_run):
    cfg, events, out = lgg_run
    assert type(events[-1]).__name__ == "DoneEvent", getattr(events[-1], "message", "")
    epoch = [e for e in events if type(e).__name__ == "EpochEvent"][0]
    assert np.isfinite(epoch.train_loss) and 0.0 <= epoch.metrics["dice"] <= 1.0
    # weights_only load (no pickled code), and the encoding recovered exactly.
    raw = torch.load(out / "last.pt", weights_only=True)
    assert raw["config"]["interactive"] == ClickEncoding(radius_mm=4.0).to_config()
    model, ckpt = load_checkpoint(out / "last.pt")
    assert isinstance(model, ClickGuided)
    assert model.encoding == ClickEncoding(radius_mm=4.0)
    assert ckpt["in_channels"] == 3 == model.image_channels  # LGG: pre-contrast, FLAIR, post
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 3 + 3  # + positive, negative, previous mask


def test_simulated_clicks_lie_inside_and_outside_the_tumour(lgg_run, shared_data):
    from napari_tumorseg.training.datasets import SegDataset, open_source, prepare_case

    _, _, out = lgg_run
    model, ckpt = load_checkpoint(out / "last.pt")
    source = open_source(shared_data / "lgg_kaggle3m")
    case = prepare_case(source.refs[0], ckpt["preprocessing"])
    ds = SegDataset([case], None, 0.0, 0)
    items = list(range(len(ds)))[:12]
    x = torch.stack([ds[i][0] for i in items])
    y = torch.stack([ds[i][1] for i in items])
    gt = y[:, 0].numpy() > 0.5
    spacings = [ds.spacing(i) for i in items]
    sim = ClickSimulator(model.encoding, iterations=3, no_click_fraction=0.25)
    n_pos = n_neg = n_none = n_multi = n_prop = 0
    for seed in range(6):
        seeds = [seed * 100 + k for k in range(len(items))]
        xin, clicks = sim.batch_inputs(model, x, y, seeds, spacings, train=True)
        assert xin.shape == (len(items), 3 + 3, 64, 64)
        assert torch.equal(xin[:, :3], x)
        for i, (pos, neg) in enumerate(clicks):
            for p in pos:
                assert gt[i][tuple(p)], "a positive click outside the tumour"
                assert xin[i, 3][tuple(p)] == 1.0
            for p in neg:
                assert not gt[i][tuple(p)], "a negative click inside the tumour"
                assert xin[i, 4][tuple(p)] == 1.0
            n_pos += len(pos)
            n_neg += len(neg)
            n_none += not pos and not neg
            n_multi += len(pos) + len(neg) > 1
            if not pos and not neg:
                assert not xin[i, 3:5].any()
                # a propagation sample: the previous mask is the tumour moved / grown / shrunk
                n_prop += bool(xin[i, 5].any())
    # first clicks, no-click share, error rounds, propagation samples
    assert n_pos > 0 and n_none > 0 and n_multi > 0 and n_prop > 0
    # Validation: one click, at the deepest point, every time.
    _, clicks = sim.batch_inputs(model, x, y, [None] * len(items), spacings, train=False)
    for i, (pos, neg) in enumerate(clicks):
        assert not neg and len(pos) == 1
        assert np.array_equal(pos[0], deep_point(gt[i], spacings[i]))


def test_glims_trains_click_guided_in_3d_and_answers_on_a_crop(shared_data, tmp_path):
    from napari_tumorseg.interactive.learned import LearnedEngine
    from napari_tumorseg.interactive.prompts import Prompts

    cfg = TrainConfig(model="glims", data=str(shared_data / "brats2013_deepmedic"),
                      out_dir=str(tmp_path), tiny=True, interactive=True, epochs=1, batch_size=1,
                      size=32, threads=1, hd95=False, recipe="paper", patches_per_volume=1,
                      max_train_items=1, max_val_items=1)
    events = run_to_end(cfg)
    assert type(events[-1]).__name__ == "DoneEvent", getattr(events[-1], "message", "")
    engine = LearnedEngine.from_checkpoint(tmp_path / "last.pt")
    assert engine.name == "learned: glims" and engine.model.image_channels == 2  # FLAIR, T1c
    image = np.random.default_rng(0).standard_normal((2, 40, 64, 64)).astype(np.float32)
    mask = engine.segment(image, (1.0, 1.0, 1.0), Prompts(positive=[[20, 10, 50]]))
    assert mask.shape == (40, 64, 64)
    # Only the 32^3 crop around the click (shifted inside the volume) can be labelled.
    outside = np.ones_like(mask)
    outside[4:36, 0:32, 32:64] = False
    assert not mask[outside].any()


def test_predict_uses_an_interactive_checkpoint_as_the_automatic_model(lgg_run, shared_data):
    """No clicks = the automatic segmentation: Predict's output equals the LearnedEngine's
    no-prompt answer on the same slice."""
    from napari_tumorseg.inference.predict import Predictor, predict_array
    from napari_tumorseg.interactive.learned import LearnedEngine
    from napari_tumorseg.interactive.prompts import Prompts
    from napari_tumorseg.training.datasets import open_source

    _, _, out = lgg_run
    data = open_source(shared_data / "lgg_kaggle3m").refs[0].load()
    image = data.image[:, 10:11]
    prob = np.asarray(predict_array(Predictor.from_checkpoint(out / "last.pt", device="cpu"), image))
    prob = prob.reshape(-1, *image.shape[1:])[-1]
    # A one-epoch model is unsure everywhere: cut both at the median so the comparison
    # splits the slice in two instead of passing on all-foreground masks.
    cut = float(np.median(prob))
    engine = LearnedEngine.from_checkpoint(out / "last.pt", threshold=cut)
    auto = engine.segment(image, (1.0, 1.0, 1.0), Prompts())
    assert 0.2 < auto.mean() < 0.8
    agree = np.mean((prob > cut) == auto)
    assert agree > 0.98, agree
