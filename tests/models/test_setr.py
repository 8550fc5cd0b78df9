"""SETR (seed 003): ViT segmenter whose decoder reaches the full input resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models import create_model, get_info, model_info
from napari_tumorseg.models.setr import SETR

TINY = {"img_size": 32, "patch_size": 8, "dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64,
        "decoder_channels": 8}



@pytest.mark.parametrize("in_channels", [1, 3, 4])
def test_output_shape_and_gradients(in_channels):
    torch.manual_seed(0)
    model = create_model("setr", in_channels=in_channels, out_channels=1, **TINY)
    # 32x32 is the reference grid; the others interpolate the learned positions.
    for size in [(33, 47), (64, 64), (32, 32), (5, 9)]:
        model.zero_grad()
        y = model(torch.randn(2, in_channels, *size))
        assert y.shape == (2, 1, *size)
        assert torch.isfinite(y).all()
        y.pow(2).mean().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert p.grad.abs().sum() > 0, name


def test_decoder_reaches_full_resolution_before_cropping():
    """The deconvolution stack alone maps the token grid to the padded input size (the
    paper's x4 decoder would stop at a quarter of it)."""
    model = create_model("setr", **TINY)
    tokens = torch.randn(1, TINY["dim"], 6, 5)
    assert model.decoder(tokens).shape[2:] == (6 * 8, 5 * 8)
    ups = [m for m in model.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(ups) == 3  # log2(8)


def test_paper_defaults():
    model = create_model("setr")
    assert isinstance(model, SETR)
    assert len(model.layers) == 8
    layer = model.layers[0]
    assert layer.attn.embed_dim == 1024 and layer.attn.num_heads == 8
    assert layer.mlp[0].out_features == 2048
    assert tuple(model.pos_embed.shape) == (1, 1024, 8, 8)  # 128 / 16
    ups = [m for m in model.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(ups) == 4  # x16 = the patch size
    with torch.no_grad():
        y = model(torch.randn(1, 3, 128, 128))
    assert y.shape == (1, 1, 128, 128)
    pre = model_info("setr")["preset"]
    assert (pre["loss"], pre["optimizer"], pre["lr"]) == ("dice", "adam", 1e-4)


def test_non_power_of_two_patch():
    model = create_model("setr", **{**TINY, "patch_size": 12, "img_size": 36})
    y = model(torch.randn(1, 3, 50, 41))
    assert y.shape == (1, 1, 50, 41)


def test_real_lgg_slice_full_resolution(shared_data):
    tifffile = pytest.importorskip("tifffile")
    case = shared_data / "lgg_kaggle3m" / "TCGA_CS_4941_19960909"
    img = tifffile.imread(case / "TCGA_CS_4941_19960909_14.tif").astype(np.float32)
    assert img.shape == (256, 256, 3)
    x = torch.from_numpy(img / 255.0).permute(2, 0, 1)[None]
    model = create_model("setr", in_channels=3, **TINY).eval()
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 1, 256, 256)
    assert torch.isfinite(y).all()


def test_bad_config_is_one_line_error():
    with pytest.raises(TumorSegError, match="multiple of patch_size"):
        create_model("setr", **{**TINY, "img_size": 30})
    with pytest.raises(TumorSegError, match="heads"):
        create_model("setr", **{**TINY, "heads": 5})


def test_tiny_config_from_registry():
    info = get_info("setr")
    model = create_model("setr", **info.tiny_config)
    assert model(torch.randn(1, info.in_channels, 40, 24)).shape == (1, 1, 40, 24)
