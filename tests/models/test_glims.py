"""GLIMS: paper parameter count, shapes at odd sizes, deep supervision, gradients everywhere."""

from __future__ import annotations

import pytest
import torch

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models.glims import GLIMSNet, build_glims

TINY = {"width": 4, "img_size": 32, "num_heads": [2, 4, 8]}
PAPER_PARAMS = 47.16e6



def test_paper_configuration_has_the_papers_parameter_count():
    with torch.device("meta"):
        net = build_glims(in_channels=4, out_channels=3)
    n = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert abs(n - PAPER_PARAMS) / PAPER_PARAMS < 0.01, n
    # the bottleneck Swin stage runs at 768 channels (paper: embed 768)
    assert net.net.bottleneck.pos.shape[1] == 768


def test_embed_dim_is_an_alias_for_width():
    with torch.device("meta"):
        a = build_glims(4, 3, embed_dim=768)
        b = build_glims(4, 3, width=24)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())


def test_train_mode_deep_supervision_and_every_parameter_learns():
    torch.manual_seed(0)
    model = build_glims(4, 3, **TINY).train()
    x = torch.randn(1, 4, 64, 32, 32)
    outs = model(x)
    assert isinstance(outs, list) and len(outs) == 4
    for k, o in enumerate(outs):
        assert o.shape == (1, 3, 64 // 2**k, 32 // 2**k, 32 // 2**k)
    # the deep-supervision loss of the paper (Eq. 3) reaches every weight
    loss = sum(w * o.sigmoid().mean() for w, o in zip((1, 0.5, 0.25, 0.125), outs))
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert dead == []


def test_odd_sizes_are_padded_and_cropped_back():
    torch.manual_seed(0)
    model = build_glims(2, 3, **TINY).train()
    outs = model(torch.randn(1, 2, 37, 30, 33))  # padded to 64 x 32 x 64 inside
    assert [tuple(o.shape[2:]) for o in outs] == [(37, 30, 33), (19, 15, 17), (10, 8, 9), (5, 4, 5)]
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(2, 2, 33, 45, 20))
    assert isinstance(y, torch.Tensor)  # eval mode: full-resolution head only
    assert y.shape == (2, 3, 33, 45, 20)
    assert torch.isfinite(y).all()


def test_deep_supervision_can_be_switched_off():
    model = build_glims(4, 3, deep_supervision=False, **TINY).train()
    y = model(torch.randn(1, 4, 32, 32, 32))
    assert isinstance(y, torch.Tensor) and y.shape == (1, 3, 32, 32, 32)


def test_position_embeddings_follow_img_size():
    with torch.device("meta"):
        net = GLIMSNet(4, 3, width=24, img_size=(128, 96, 64))
    assert tuple(net.swin3.pos.shape[2:]) == (16, 12, 8)
    assert tuple(net.bottleneck.pos.shape[2:]) == (4, 3, 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"img_size": 100},
        {"width": 5, "num_heads": [6, 12, 24]},
        {"pretrained": "/nonexistent/weights.pt"},
        {"embed_dim": 100},
        {"windw": 7},
    ],
)
def test_bad_configuration_is_a_one_line_error(kwargs):
    with pytest.raises(TumorSegError) as err, torch.device("meta"):
        build_glims(4, 3, **kwargs)
    assert "\n" not in str(err.value)


def test_registry_entry_carries_the_paper_preset():
    from napari_tumorseg.models import create_model, model_info

    info = model_info("glims")
    assert info["dims"] == 3 and info["output"] == "regions"
    assert info["class_names"] == ["WT", "TC", "ET"]
    assert info["input_multiple"] == 32 and info["input_size"] == [96, 96, 96]
    preset = info["preset"]
    assert preset["optimizer"] == "adamw" and preset["lr"] == 1e-3 and preset["weight_decay"] == 1e-5
    assert preset["scheduler"] == "cosine" and preset["batch_size"] == 2 and preset["epochs"] == 1000
    assert preset["loss"] == "dice_ce" and preset["loss_params"]["sigmoid"] is True
    assert preset["deep_supervision_weights"] == [1.0, 0.5, 0.25, 0.125]
    with torch.device("meta"):
        model = create_model("glims", **info["tiny_config"])
    assert sum(p.numel() for p in model.parameters()) < 3e6
