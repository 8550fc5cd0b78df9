"""U-Net (seeds 000/003): any input size, every parameter trained, learns a real slice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models import create_model, get_info, model_info
from napari_tumorseg.models.common import InstanceNorm2d
from napari_tumorseg.models.unet import UNet



def _forward_backward(model, in_channels, size, batch=2):
    x = torch.randn(batch, in_channels, *size)
    y = model(x)
    y.float().pow(2).mean().backward()
    return y


@pytest.mark.parametrize("in_channels", [1, 3, 4])
def test_output_shape_and_gradients(in_channels):
    torch.manual_seed(0)
    model = create_model("unet", in_channels=in_channels, out_channels=2, width=4)
    for size in [(33, 47), (64, 64), (17, 16)]:
        model.zero_grad()
        y = _forward_backward(model, in_channels, size)
        assert y.shape == (2, 2, *size)
        assert torch.isfinite(y).all()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_paper_architecture():
    model = create_model("unet")
    assert isinstance(model, UNet)
    assert [d.conv.conv1.out_channels for d in model.downs] == [64, 128, 256, 512]
    assert model.bottleneck.conv1.out_channels == 1024
    assert [type(u.up).__name__ for u in model.ups] == ["ConvTranspose2d"] * 4
    assert model.head.kernel_size == (1, 1)
    # Four double-conv down blocks, bottleneck, four up blocks of the classic U-Net (31.0M).
    n = sum(p.numel() for p in model.parameters())
    assert 30.9e6 < n < 31.1e6


def test_preset_is_seed_000_with_seed_003_variants():
    info = model_info("unet")
    pre = info["preset"]
    assert info["paper"].startswith("000_")
    assert (pre["loss"], pre["optimizer"], pre["scheduler"]) == ("bce", "adam", "step")
    assert pre["scheduler_params"] == {"step_size": 10, "gamma": 0.1}
    assert pre["amp"] is True and pre["grad_clip"] == 1.0
    combos = {v["name"]: v for v in pre["loss_params"]["variants"]}
    assert combos["combo_0.7"]["loss_params"]["alpha"] == 0.7
    assert combos["combo_0.5"]["loss_params"]["alpha"] == 0.5


def test_instance_norm_option_keeps_paper_batchnorm_default():
    paper = create_model("unet", width=4)
    assert all(isinstance(d.conv.norm, torch.nn.BatchNorm2d) for d in paper.downs)
    inst = create_model("unet", width=4, norm="instance")
    norms = [m for m in inst.modules() if isinstance(m, InstanceNorm2d)]
    assert len(norms) == 9 and all(n.affine for n in norms)  # 4 down, bottleneck, 4 up
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in inst.modules())
    # Instance norm makes a sample's output independent of the rest of its batch in training.
    torch.manual_seed(0)
    x = torch.randn(3, 1, 32, 32)
    assert torch.allclose(inst(x)[:1], inst(x[:1]), atol=1e-5)
    group = create_model("unet", width=8, norm="group")
    gns = [m for m in group.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(gns) == 9 and gns[0].num_groups == 2  # 8 channels in groups of 4
    with pytest.raises(TumorSegError, match="norm"):
        create_model("unet", width=4, norm="layer")


def test_instance_norm_is_torchs_instance_norm_and_keeps_channels_last():
    torch.manual_seed(0)
    ours = InstanceNorm2d(6)
    stock = torch.nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(6))
        ours.bias.copy_(torch.randn(6))
    stock.load_state_dict(ours.state_dict())  # same parameter names: old checkpoints load
    assert set(stock.state_dict()) == set(ours.state_dict())
    x = torch.randn(3, 6, 20, 24) * 5 + 2
    assert torch.allclose(ours(x), stock(x), atol=1e-4)
    cl = x.contiguous(memory_format=torch.channels_last)
    y = ours(cl)
    assert torch.allclose(y, stock(x), atol=1e-4)
    assert y.is_contiguous(memory_format=torch.channels_last)
    # a bf16 training step takes the stock kernel (see the class): the same normalisation
    with torch.autocast("cpu", torch.bfloat16):
        assert torch.allclose(ours(x).float(), stock(x).float(), atol=0.05)
    # a sample's output does not depend on the rest of its batch, in training mode too
    ours.train()
    assert torch.allclose(ours(x)[1:2], ours(x[1:2]), atol=1e-5)


def test_instance_norm_of_small_channels_last_planes_runs_in_nchw_with_the_same_values():
    """The deep levels (planes up to 16 x 16) are normalised on an NCHW copy (channels-last
    group_norm is slow there on a CPU, benchmarks/RESULTS_precision.md); larger planes keep
    channels-last. The values are torch's instance norm either way, in fp32 and bf16."""
    torch.manual_seed(1)
    ours = InstanceNorm2d(32).eval()
    stock = torch.nn.InstanceNorm2d(32, affine=True).eval()
    with torch.no_grad():
        ours.weight.copy_(torch.randn(32))
        ours.bias.copy_(torch.randn(32))
    stock.load_state_dict(ours.state_dict())
    for side, keeps_layout in ((8, False), (16, False), (32, True)):
        x = (torch.randn(2, 32, side, side) * 3 + 1).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            y = ours(x)
            assert torch.allclose(y, stock(x.contiguous()), atol=1e-4), side
            assert y.is_contiguous(memory_format=torch.channels_last) == keeps_layout, side
            with torch.autocast("cpu", torch.bfloat16):
                yb = ours(x.bfloat16())
            assert torch.allclose(yb.float(), stock(x.contiguous()), atol=0.1), side


def test_unknown_config_is_one_line_error():
    with pytest.raises(TumorSegError, match="unknown config"):
        create_model("unet", widht=4)


def test_missing_pretrained_file_is_one_line_error(tmp_path):
    with pytest.raises(TumorSegError, match="not found") as exc:
        create_model("unet", width=4, pretrained=str(tmp_path / "nope.pt"))
    assert "\n" not in str(exc.value)


def test_learns_a_real_lgg_slice(shared_data):
    """A tiny U-Net overfits one real FLAIR slice (LGG kaggle_3m, seed 003's data)."""
    tifffile = pytest.importorskip("tifffile")
    case = shared_data / "lgg_kaggle3m" / "TCGA_CS_4941_19960909"
    img = tifffile.imread(case / "TCGA_CS_4941_19960909_14.tif").astype(np.float32)
    mask = tifffile.imread(case / "TCGA_CS_4941_19960909_14_mask.tif") > 0
    # An odd crop around the brain keeps the padding path in play and the test fast.
    img, mask = img[40:203:2, 30:221:2], mask[40:203:2, 30:221:2]
    assert mask.sum() > 50
    x = torch.from_numpy((img - img.mean()) / (img.std() + 1e-6)).permute(2, 0, 1)[None]
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    torch.manual_seed(0)
    model = create_model("unet", in_channels=3, out_channels=1, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(60):
        opt.zero_grad()
        out = model(x)
        assert out.shape[2:] == x.shape[2:]
        loss = loss_fn(out, t)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        pred = model(x) > 0
    dice = 2 * (pred & (t > 0)).sum() / (pred.sum() + (t > 0).sum())
    assert losses[-1] < 0.3 * losses[0]
    assert dice > 0.7


def test_registry_info_matches_builder():
    info = get_info("unet")
    model = create_model("unet", **info.tiny_config)
    x = torch.randn(1, info.in_channels, *info.input_size)
    assert model(x).shape == (1, info.out_channels, *info.input_size)
