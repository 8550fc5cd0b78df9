"""The training engine on real data, CPU, tiny models."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
import torch

from napari_tumorseg.training import TrainConfig, train
from napari_tumorseg.training.events import (
    DoneEvent,
    EpochEvent,
    ErrorEvent,
    StartEvent,
    StepEvent,
)


def events_of(cfg, cancel=None):
    evs = list(train(cfg, cancel))
    by = {}
    for e in evs:
        by.setdefault(type(e), []).append(e)
    return evs, by


def test_tiny_unet_overfits_eight_coco_images(shared_data, tmp_path):
    cfg = TrainConfig(model="unet", data=shared_data / "coco_ravirawal/train", out_dir=str(tmp_path),
                      epochs=20, batch_size=4, lr=3e-3, size=64, model_config={"width": 8},
                      max_train_items=8, val_fraction=0, augmentation=False, scheduler="none",
                      recipe="paper")
    evs, by = events_of(cfg)
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    epochs = by[EpochEvent]
    assert len(epochs) == 20 and by[StartEvent][0].n_train == 8
    assert len(by[StepEvent]) == 40
    first, last = epochs[0], epochs[-1]
    assert last.train_loss < 0.6 * first.train_loss
    assert last.metrics["train_dice"] > 0.5, [round(e.metrics["train_dice"], 3) for e in epochs]


@pytest.fixture(scope="module")
def short_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(model="unet", data=shared_data / "coco_ravirawal", out_dir=str(out),
                      epochs=2, batch_size=4, size=48, tiny=True, max_train_items=6,
                      max_val_items=4, seed=3, recipe="paper")
    evs, by = events_of(cfg)
    return cfg, out, evs, by


def test_checkpoint_contents(short_run):
    from napari_tumorseg.models.checkpoint import load_checkpoint

    cfg, out, evs, by = short_run
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    assert {p.name for p in out.iterdir()} >= {"last.pt", "best.pt", "history.csv"}
    model, ck = load_checkpoint(out / "last.pt")
    assert ck["model_name"] == "unet" and ck["in_channels"] == 1 and ck["out_channels"] == 1
    assert ck["config"]["width"] == 4
    prep = ck["preprocessing"]
    assert prep["size"] == [48, 48] and prep["spatial"] == "resize" and prep["dims"] == 2
    # New runs on 8-bit JPGs keep the export's window (napari_tumorseg.intensity.new_run_method).
    assert prep["normalize"] == "window8" and prep["clip_percentiles"] == [0.5, 99.5]
    assert prep["channels"] == 1 and prep["target"] == "binary"
    hist = ck["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    for key in ("train_loss", "val_loss", "lr", "train_dice", "val_dice", "val_iou", "val_precision",
                "val_recall", "val_pixel_accuracy", "val_mean_accuracy", "val_hd95"):
        assert key in hist[-1], key
    extra = ck["extra"]
    st = extra["train_state"]
    assert st["epoch"] == 2 and st["batch"] == 0 and st["global_step"] == 4
    assert set(extra) >= {"optimizer", "scheduler", "rng", "train_config", "resolved", "split"}
    assert extra["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3)  # unet preset
    assert extra["resolved"]["loss"] == "bce" and extra["resolved"]["optimizer"] == "adam"
    assert extra["resolved"]["grad_clip"] == 1.0 and extra["scheduler"]["step_size"] == 10
    assert not set(extra["split"]["train"]) & set(extra["split"]["val"])
    # The saved weights are the trained ones and give the model's output shape.
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 48, 48)).shape == (1, 1, 48, 48)
    # best.pt is the epoch with the best validation Dice.
    _, best = load_checkpoint(out / "best.pt", build=False)
    dices = [h["val_dice"] for h in hist]
    assert best["extra"]["train_state"]["best_epoch"] == 1 + int(np.argmax(dices))
    # history.csv mirrors the checkpoint's history.
    with open(out / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    assert float(rows[1]["train_loss"]) == pytest.approx(hist[1]["train_loss"])
    assert float(rows[0]["val_dice"]) == pytest.approx(hist[0]["val_dice"])


def test_epoch_metrics_match_metrics_module(short_run):
    """Validation Dice is the per-case mean of napari_tumorseg.metrics on the val set."""
    from napari_tumorseg.metrics import segmentation_metrics
    from napari_tumorseg.models.checkpoint import load_checkpoint
    from napari_tumorseg.training.datasets import open_source, prepare_case, split_refs
    from napari_tumorseg.training.engine import _take

    cfg, out, evs, by = short_run
    model, ck = load_checkpoint(out / "last.pt")
    src = open_source(cfg.data)
    _, val, _ = split_refs(src, cfg.val_fraction, cfg.seed)
    val = _take(val, cfg.max_val_items, cfg.seed + 1)
    dices = []
    with torch.no_grad():
        for ref in val:
            case = prepare_case(ref, ck["preprocessing"])
            logits = model(torch.from_numpy(case.image[:, 0][None]))
            pred = logits[0, 0].numpy() > 0
            dices.append(segmentation_metrics(pred, case.labels[0] > 0, hd=False)["dice"])
    assert by[EpochEvent][-1].metrics["dice"] == pytest.approx(float(np.mean(dices)), abs=1e-9)


def test_refuses_to_clobber_another_run(short_run):
    cfg, out, evs, by = short_run
    evs2, _ = events_of(TrainConfig(model="unet", data=cfg.data, out_dir=str(out), epochs=1, tiny=True))
    assert isinstance(evs2[-1], ErrorEvent) and "already holds" in evs2[-1].message


def test_errors_end_cleanly(shared_data, tmp_path):
    evs, _ = events_of(TrainConfig(model="unet", data=tmp_path / "nowhere", out_dir=str(tmp_path / "o")))
    assert len(evs) == 1 and isinstance(evs[0], ErrorEvent)
    assert "does not exist" in evs[0].message and "\n" not in evs[0].message
    empty = tmp_path / "empty"
    empty.mkdir()
    evs, _ = events_of(TrainConfig(model="unet", data=empty, out_dir=str(tmp_path / "o")))
    assert isinstance(evs[-1], ErrorEvent) and "no training data" in evs[-1].message
    # Image and mask of different sizes (a real LGG slice with a cropped mask).
    import tifffile

    img = tifffile.imread(shared_data / "lgg_kaggle3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_12.tif")
    mask = tifffile.imread(shared_data / "lgg_kaggle3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_12_mask.tif")
    evs, _ = events_of(TrainConfig(model="unet", data=[(img[..., 1], mask[:200], None, "p1"),
                                                       (img[..., 1], mask, None, "p2")],
                                   out_dir=str(tmp_path / "o"), tiny=True, size=32))
    assert isinstance(evs[-1], ErrorEvent) and "differ in size" in evs[-1].message
    evs, _ = events_of(TrainConfig(model="nonet", data=shared_data / "lgg_kaggle3m", out_dir=str(tmp_path / "o")))
    assert isinstance(evs[-1], ErrorEvent) and "unknown model" in evs[-1].message


def test_nan_loss_keeps_last_good_checkpoint(shared_data, tmp_path):
    import tifffile

    folder = shared_data / "lgg_kaggle3m/TCGA_CS_4941_19960909"
    items = []
    for n in (12, 13, 14):
        img = tifffile.imread(folder / f"TCGA_CS_4941_19960909_{n}.tif")[..., 1].astype(np.float32)
        mask = tifffile.imread(folder / f"TCGA_CS_4941_19960909_{n}_mask.tif")
        items.append((img, mask, (1.0, 1.0, 1.0), f"s{n}"))
    out = tmp_path / "o"
    cfg = TrainConfig(model="unet", data=items, out_dir=str(out), epochs=1, batch_size=3, size=32,
                      tiny=True, val_fraction=0)
    evs, _ = events_of(cfg)
    assert isinstance(evs[-1], DoneEvent)
    before = (out / "last.pt").read_bytes()
    bad = [(np.full_like(i, np.nan), m, s, c) for i, m, s, c in items]
    cfg2 = TrainConfig(model="unet", data=bad, out_dir=str(out), epochs=3, batch_size=3, size=32,
                       tiny=True, val_fraction=0, resume=str(out / "last.pt"))
    evs, _ = events_of(cfg2)
    assert isinstance(evs[-1], ErrorEvent) and "nan" in evs[-1].message.lower()
    assert evs[-1].checkpoint == str(out / "last.pt")
    assert (out / "last.pt").read_bytes() == before


def test_glims_trains_one_step_on_a_brats_patch(shared_data, tmp_path):
    from napari_tumorseg.models.checkpoint import load_checkpoint

    cfg = TrainConfig(model="glims", data=shared_data / "brats2013_deepmedic/train", out_dir=str(tmp_path),
                      epochs=1, batch_size=1, tiny=True, max_train_items=1, val_fraction=0,
                      patches_per_volume=1)
    evs, by = events_of(cfg)
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    steps = by[StepEvent]
    assert len(steps) == 1 and math.isfinite(steps[0].loss) and steps[0].loss > 0
    _, ck = load_checkpoint(tmp_path / "last.pt")
    prep = ck["preprocessing"]
    assert prep["dims"] == 3 and prep["patch_size"] == [32, 32, 32]
    assert prep["region_convention"] == "brats" and prep["channels"] == 2 == ck["in_channels"]
    assert ck["out_channels"] == 3 and ck["class_names"] == ["WT", "TC", "ET"]
    assert ck["extra"]["resolved"]["optimizer"] == "adamw"
    # The train-mode model returned deep-supervision outputs and the loss weighted them.
    assert ck["extra"]["resolved"]["loss"] == "dice_ce"


def test_patch_sampling_finds_the_tumour(shared_data):
    from napari_tumorseg.training.datasets import PatchDataset, open_source, prepare_case
    from napari_tumorseg.training.preprocessing import default_preprocessing

    src = open_source(shared_data / "brats2013_deepmedic/validation")
    prep = {**default_preprocessing(3, None, 2, "regions"), "normalize": "zscore", "region_convention": "brats"}
    case = prepare_case(src.refs[0], prep)
    ds = PatchDataset([case], (32, 32, 32), patches_per_volume=1, fg_prob=0.67)
    hits = [float(ds[(0, s)][1][0].any()) for s in range(30)]
    tumour_share = (case.labels > 0).mean()
    assert tumour_share < 0.05 and np.mean(hits) > 0.5
    x, y = ds[0]  # validation: centred on the tumour
    assert x.shape == (2, 32, 32, 32) and y.shape == (3, 32, 32, 32) and y[0].any()


def _class_folders(shared_data, root, n=6):
    """Real images: 'tumour' = annotated coco_ravirawal images, 'no_tumour' = unannotated ones."""
    d = json.loads((shared_data / "coco_ravirawal/train/_annotations.coco.json").read_text())
    annotated = {a["image_id"] for a in d["annotations"]}
    groups = {"no_tumour": [], "tumour": []}
    for img in d["images"]:
        key = "tumour" if img["id"] in annotated else "no_tumour"
        if len(groups[key]) < n:
            groups[key].append(img["file_name"])
    for cls, names in groups.items():
        (root / cls).mkdir(parents=True)
        for name in names:
            os.symlink(shared_data / "coco_ravirawal/train" / name, root / cls / name)
    return root


def test_convnextv2_classifier_trains_on_class_folders(shared_data, tmp_path):
    data = _class_folders(shared_data, tmp_path / "classes")
    cfg = TrainConfig(model="convnextv2", data=data, out_dir=str(tmp_path / "o"), epochs=1,
                      batch_size=4, size=64, tiny=True, val_fraction=0.35)
    evs, by = events_of(cfg)
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    start = by[StartEvent][0]
    assert start.n_train + start.n_val == 12 and start.n_val >= 2
    ep = by[EpochEvent][0]
    assert 0.0 <= ep.metrics["accuracy"] <= 1.0 and "train_accuracy" in ep.metrics
    from napari_tumorseg.models.checkpoint import load_checkpoint

    _, ck = load_checkpoint(tmp_path / "o/last.pt")
    assert ck["class_names"] == ["no_tumour", "tumour"] and ck["out_channels"] == 2
    assert ck["preprocessing"]["channels"] == 3 and ck["preprocessing"]["channel_mode"] == "repeat"


def test_segformer_two_logit_cross_entropy(shared_data, tmp_path):
    cfg = TrainConfig(model="segformer", data=shared_data / "coco_ravirawal/valid", out_dir=str(tmp_path),
                      epochs=1, batch_size=2, size=64, tiny=True, max_train_items=2, max_val_items=1)
    evs, by = events_of(cfg)
    assert isinstance(evs[-1], DoneEvent), evs[-1]
    ep = by[EpochEvent][0]
    assert math.isfinite(ep.train_loss) and math.isfinite(ep.val_loss) and "dice" in ep.metrics


def test_sgd_momentum_comes_from_optimizer_params_not_the_schedule():
    from napari_tumorseg.errors import TumorSegError
    from napari_tumorseg.training.engine import _build_optimizer

    params = [torch.nn.Parameter(torch.zeros(2))]
    assert _build_optimizer("sgd", params, 0.1, 0.0).param_groups[0]["momentum"] == 0.9
    opt = _build_optimizer("sgd", params, 0.1, 0.0, {"momentum": 0.5, "nesterov": True})
    assert opt.param_groups[0]["momentum"] == 0.5 and opt.param_groups[0]["nesterov"]
    # A schedule's step_size is no optimiser option: it is refused, not silently dropped.
    with pytest.raises(TumorSegError, match="does not take step_size"):
        _build_optimizer("sgd", params, 0.1, 0.0, {"step_size": 10})
    assert _build_optimizer("adam", params, 0.1, 0.0, {"betas": (0.8, 0.9)}).param_groups[0]["betas"] == (0.8, 0.9)
