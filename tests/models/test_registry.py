"""Every registry entry carries its paper and that paper's training preset."""

from __future__ import annotations

import json

import pytest

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models import create_model, list_models, model_info

SEVEN = {"unet", "lintunet", "hybrid_unet", "segformer", "convnextv2", "setr", "glims"}
PAPER_OF = {
    "unet": "000_", "lintunet": "000_", "hybrid_unet": "001_", "segformer": "002_",
    "convnextv2": "002_", "setr": "003_", "glims": "004_",
}
LOSSES = {"bce", "dice", "combo", "bce_dice", "dice_ce", "ce"}


def test_all_seven_models_registered():
    assert set(list_models()) == SEVEN


@pytest.mark.parametrize("name", sorted(SEVEN))
def test_entry_carries_paper_and_preset(name, shared_seeds):
    if name not in list_models():
        pytest.fail(f"{name} is not registered yet")
    info = model_info(name)
    json.dumps(info)  # plain data: the CLI and checkpoints serialise it
    assert info["name"] == name
    assert info["paper"].startswith(PAPER_OF[name])
    assert (shared_seeds / info["paper"]).is_file()
    assert info["dims"] in (2, 3) and len(info["input_size"]) == info["dims"]
    assert all(s % info["input_multiple"] == 0 for s in info["input_size"])
    assert info["in_channels"] >= 1 and info["out_channels"] >= 1
    assert info["output"] in ("binary", "regions", "classes", "multiclass")
    assert info["description"]
    pre = info["preset"]
    assert pre["loss"] in LOSSES
    assert pre["optimizer"] in ("adam", "adamw", "sgd")
    assert pre["scheduler"] in ("none", "step", "cosine", "poly")
    assert pre["lr"] > 0 and pre["batch_size"] >= 1 and pre["epochs"] >= 1
    assert isinstance(pre["amp"], bool)
    assert pre["grad_clip"] is None or pre["grad_clip"] > 0


def test_presets_follow_the_papers():
    """Values stated by the seeds (000: notebook; 002: lr 6e-4, batch 10, 15 epochs;
    003: Dice, Adam 1e-4; 004: Dice+CE, AdamW + cosine, 96^3)."""
    names = set(list_models())
    for name in {"unet", "lintunet"} & names:
        pre = model_info(name)["preset"]
        assert (pre["loss"], pre["optimizer"], pre["lr"]) == ("bce", "adam", 1e-3)
        assert pre["scheduler"] == "step" and pre["amp"] and pre["grad_clip"] == 1.0
    if "setr" in names:
        pre = model_info("setr")["preset"]
        assert (pre["loss"], pre["optimizer"], pre["lr"]) == ("dice", "adam", 1e-4)
    if "segformer" in names:
        pre = model_info("segformer")["preset"]
        assert (pre["lr"], pre["batch_size"], pre["epochs"]) == (6e-4, 10, 15)
    if "glims" in names:
        info = model_info("glims")
        pre = info["preset"]
        assert (pre["loss"], pre["optimizer"], pre["scheduler"]) == ("dice_ce", "adamw", "cosine")
        assert info["input_size"] == [96, 96, 96]


def test_unknown_model_is_one_line_error():
    with pytest.raises(TumorSegError, match="unknown model 'nope'; known models:"):
        create_model("nope")
    with pytest.raises(TumorSegError, match="unknown model"):
        model_info("nope")


def test_model_info_is_a_copy():
    info = model_info("unet")
    info["preset"]["lr"] = 123.0
    assert model_info("unet")["preset"]["lr"] == 1e-3
