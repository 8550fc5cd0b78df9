"""convnextv2 (seed 002): four-class logits, channels, local timm weights."""

from __future__ import annotations

import pytest
import timm
import torch

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models import create_model, model_info


@pytest.mark.parametrize("in_channels,size", [(1, (64, 64)), (3, (65, 47)), (4, (32, 96))])
def test_four_class_logits_and_every_parameter_learns(in_channels, size):
    torch.manual_seed(0)
    model = create_model("convnextv2", in_channels=in_channels, variant="atto", drop_path_rate=0.0)
    y = model(torch.randn(2, in_channels, *size))
    assert y.shape == (2, 4)
    torch.nn.functional.cross_entropy(y, torch.tensor([0, 3])).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    # GRN's gamma/beta start at zero; they still get gradients, and so does everything else.
    zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert zero == []


@pytest.fixture(scope="module")
def imagenet_like_file(tmp_path_factory):
    # The shape of timm's ImageNet checkpoint: 1000-class head, RGB stem.
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "convnextv2_atto.pth"
    torch.save(timm.create_model("convnextv2_atto", pretrained=False).state_dict(), path)
    return path


def test_pretrained_timm_file_drops_the_imagenet_head(imagenet_like_file):
    ref = torch.load(imagenet_like_file, weights_only=True)
    model = create_model("convnextv2", variant="atto", pretrained=str(imagenet_like_file))
    sd = model.state_dict()
    for key in ref:
        if key.startswith("head.fc."):
            assert sd[key].shape[0] == 4  # new 4-class head, left at its initialisation
        else:
            torch.testing.assert_close(sd[key], ref[key])
    grey = create_model("convnextv2", in_channels=1, variant="atto", pretrained=str(imagenet_like_file))
    torch.testing.assert_close(grey.state_dict()["stem.0.weight"], ref["stem.0.weight"].sum(dim=1, keepdim=True))


def test_pretrained_four_class_file_round_trips(tmp_path):
    torch.manual_seed(0)
    src = create_model("convnextv2", variant="atto").eval()
    path = tmp_path / "mine.pt"
    torch.save(src.state_dict(), path)
    loaded = create_model("convnextv2", variant="atto", pretrained=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x))


def test_pretrained_errors(tmp_path, imagenet_like_file):
    with pytest.raises(TumorSegError, match="not found"):
        create_model("convnextv2", variant="atto", pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(TumorSegError, match="wrong ConvNeXt V2 variant"):
        create_model("convnextv2", variant="femto", pretrained=str(imagenet_like_file))
    other = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), other)
    with pytest.raises(TumorSegError, match="does not look like a ConvNeXt V2"):
        create_model("convnextv2", variant="atto", pretrained=str(other))
    with pytest.raises(TumorSegError, match="variant"):
        create_model("convnextv2", variant="huge2")


def test_registry_entry():
    info = model_info("convnextv2")
    assert info["output"] == "classes" and info["out_channels"] == 4
    assert info["class_names"] == ["glioma", "meningioma", "no tumour", "pituitary"]
    assert info["input_size"] == [224, 224]
    assert info["preset"]["loss"] == "ce" and info["preset"]["optimizer"] == "adam"
    from napari_tumorseg.models import get_info
    from napari_tumorseg.training.losses import build_loss

    build_loss(get_info("convnextv2").preset, mode=info["output"])  # the trainer accepts the preset
