"""hybrid_unet (seed 001): shapes, gradients, paper configuration, local ResNet-50 weights."""

from __future__ import annotations

import pytest
import torch
import torchvision

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models import create_model, get_info, model_info
from napari_tumorseg.models.hybrid_unet import HybridUNet


def _tiny(in_channels: int = 1, **kw):
    return create_model("hybrid_unet", in_channels=in_channels, **{**get_info("hybrid_unet").tiny_config, **kw})


@pytest.mark.parametrize("size", [(32, 32), (37, 50), (65, 33)])
def test_output_has_input_shape_and_every_parameter_learns(size):
    torch.manual_seed(0)
    model = _tiny(in_channels=1)
    x = torch.randn(2, 1, *size)
    y = model(x)
    assert y.shape == (2, 1, *size)
    y.square().mean().backward()
    params = dict(model.named_parameters())
    assert [n for n, p in params.items() if p.grad is None] == []
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    # At tiny width an SE/CBAM MLP has one hidden ReLU unit, which may be inactive for
    # this batch (zero gradient, though connected); at real widths that cannot last.
    zero = [n for n, p in params.items() if not p.grad.abs().sum() > 0]
    assert len(zero) <= 0.05 * len(params), zero


@pytest.mark.parametrize("in_channels", [1, 3, 4])
def test_in_channels(in_channels):
    model = _tiny(in_channels=in_channels).eval()
    with torch.no_grad():
        y = model(torch.randn(1, in_channels, 48, 40))
    assert y.shape == (1, 1, 48, 40)
    assert model.backbone.conv1.in_channels == in_channels


def test_paper_configuration_shapes_and_size():
    # Shapes on the meta device: no memory, no compute.
    with torch.device("meta"):
        model = HybridUNet(3, 1)
        feats = model.encode(torch.empty(1, 3, 512, 512))
        tokens = model.bottleneck(feats[-1])
    # The paper's four encoder stages at 512x512x3.
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 256, 256), (256, 128, 128), (512, 64, 64), (1024, 32, 32)]
    assert tokens.shape == (1, 1024, 32, 32)  # 1024 tokens of width 1024
    blocks = model.bottleneck.blocks
    assert len(blocks) == 4
    assert blocks[0].self_attn.num_heads == 8 and blocks[0].linear1.out_features == 1024
    assert blocks[0].dropout.p == pytest.approx(0.1)

    count = sum(p.numel() for p in model.parameters())
    # The encoder trunk is exactly torchvision's ResNet-50 without layer4 and fc.
    ref = torchvision.models.resnet50()
    trunk = sum(p.numel() for n, p in ref.named_parameters() if not n.startswith(("layer4", "fc")))
    assert sum(p.numel() for p in model.backbone.parameters()) == trunk == 8_543_296
    # 4 transformer blocks at width 1024: 4 * (4*1024^2 + 2*1024*1024 + biases + norms).
    assert sum(p.numel() for p in model.bottleneck.parameters()) == 4 * (6 * 1024 * 1024 + 10 * 1024)
    assert 35e6 < count < 42e6, count  # 38.28M measured


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    return path


def test_pretrained_resnet50_file_loads_into_the_encoder(resnet50_file):
    ref = torch.load(resnet50_file, weights_only=True)
    model = create_model("hybrid_unet", in_channels=3, pretrained=str(resnet50_file), width=0.125)
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, ref[key])

    grey = create_model("hybrid_unet", in_channels=1, pretrained=str(resnet50_file), width=0.125)
    torch.testing.assert_close(grey.backbone.conv1.weight, ref["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(grey.backbone.layer3[5].conv3.weight, ref["layer3.5.conv3.weight"])
    four = create_model("hybrid_unet", in_channels=4, pretrained=str(resnet50_file), width=0.125)
    assert four.backbone.conv1.weight.shape == (64, 4, 7, 7)


def test_pretrained_errors_are_one_line(tmp_path, resnet50_file):
    def fails(path, match, **kw):
        with pytest.raises(TumorSegError, match=match) as info:
            create_model("hybrid_unet", pretrained=str(path), width=0.125, **kw)
        assert "\n" not in str(info.value)

    fails(tmp_path / "nope.pth", "not found")
    r18 = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), r18)
    fails(r18, "shape|lacks")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage")
    fails(junk, "cannot read")
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, other)
    fails(other, "does not look like a ResNet-50")
    fails(resnet50_file, "encoder_base=64", encoder_base=8)


def test_registry_entry_carries_the_paper_preset():
    info = model_info("hybrid_unet")
    assert info["paper"] == "001_871864c2920da804.txt"
    assert info["output"] == "binary" and info["dims"] == 2
    assert info["input_size"] == [512, 512] and info["input_multiple"] == 16
    preset = info["preset"]
    assert preset["loss"] == "bce_dice" and preset["loss_params"]["lambda"] == 1.0
    assert preset["batch_size"] == 8 and preset["epochs"] == 29
    assert "resnet50" in info["pretrained"]
    # The trainer's loss factory accepts the preset as it stands.
    from napari_tumorseg.training.losses import build_loss

    loss = build_loss(get_info("hybrid_unet").preset, mode="binary")
    logits = torch.zeros(1, 1, 4, 4)
    target = torch.ones(1, 1, 4, 4)
    assert torch.isfinite(loss(logits, target))


def test_bad_config_is_a_clear_error():
    with pytest.raises(TumorSegError, match="bad config"):
        create_model("hybrid_unet", no_such_option=3)
