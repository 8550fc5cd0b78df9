"""segformer (seed 002): any input size, MiT variants, local weights only."""

from __future__ import annotations

import socket

import pytest
import torch

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models import create_model, model_info
from napari_tumorseg.models.segformer import _INPUT_CONVS, VARIANTS, _rename, variant_fields


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _tiny(in_channels: int = 3, **kw):
    return create_model("segformer", in_channels=in_channels, variant="tiny", **kw)


@pytest.mark.parametrize("size", [(32, 32), (37, 50), (65, 33), (17, 9)])
def test_full_resolution_logits_and_every_parameter_learns(size, no_network):
    torch.manual_seed(0)
    # Stochastic depth off: a dropped branch would rightly get no gradient this step.
    model = _tiny(in_channels=1, drop_path_rate=0.0)
    y = model(torch.randn(2, 1, *size))
    assert y.shape == (2, 2, *size)
    y.square().mean().backward()
    # HF's SegformerForSemanticSegmentation has no unused parameters: all must learn.
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("in_channels", [1, 3, 4])
def test_in_channels(in_channels):
    model = _tiny(in_channels).eval()
    with torch.no_grad():
        assert model(torch.randn(1, in_channels, 40, 24)).shape == (1, 2, 40, 24)
    assert model.hf.config.num_channels == in_channels
    assert model.hf.config.id2label == {0: "background", 1: "tumour"}


def test_padding_does_not_shift_the_prediction():
    # Padding at the far end must not shift the map: the 60x60 top-left part of a 64x64
    # input (padded back to 64) gives, far from the pad, nearly the full input's logits
    # (global attention lets the pad leak a little), much closer than unrelated regions.
    torch.manual_seed(0)
    model = _tiny(1).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        full = model(x)
        part = model(x[..., :60, :60])
    assert part.shape[2:] == (60, 60)
    diff = (full[..., :16, :16] - part[..., :16, :16]).abs().mean()
    shifted = (full[..., 2:18, 2:18] - part[..., :16, :16]).abs().mean()  # what a 2-px shift gives
    assert diff < 0.02 * shifted  # measured: 0.005


def test_official_variant_sizes(no_network):
    assert variant_fields("b0")["hidden_sizes"] == [32, 64, 160, 256]
    assert variant_fields("b5")["depths"] == [3, 6, 40, 3]
    assert set(VARIANTS) >= {"b0", "b1", "b2", "b3", "b4", "b5"}
    b0 = create_model("segformer")  # paper default
    count = sum(p.numel() for p in b0.parameters())
    assert 3.6e6 < count < 3.8e6  # SegFormer-B0: 3.7M (3.8M in the paper incl. 150 classes)
    with pytest.raises(TumorSegError, match="variant"):
        create_model("segformer", variant="b9")
    with pytest.raises(TumorSegError, match="unknown config"):
        create_model("segformer", variant="tiny", no_such_field=1)


def test_pretrained_from_save_pretrained_directory(tmp_path, no_network):
    torch.manual_seed(0)
    src = _tiny(3).eval()
    src.hf.save_pretrained(tmp_path / "ckpt")
    loaded = create_model("segformer", in_channels=3, pretrained=str(tmp_path / "ckpt")).eval()
    assert loaded.hf.config.hidden_sizes == [8, 16, 24, 32]  # architecture from config.json
    x = torch.randn(1, 3, 45, 38)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x))


def test_pretrained_from_state_dict_files_and_head_and_channel_adaptation(tmp_path, no_network):
    torch.manual_seed(0)
    src = _tiny(3).eval()
    pt = tmp_path / "w.pt"
    torch.save(src.state_dict(), pt)  # our wrapper's keys ("hf.")
    loaded = _tiny(3, pretrained=str(pt)).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x))

    # An encoder pretrained elsewhere with another label count (e.g. ADE20k 150):
    # encoder loads, the classifier is left at its initialisation.
    ade = create_model("segformer", in_channels=3, out_channels=150, variant="tiny")
    from safetensors.torch import save_file

    st = tmp_path / "ade.safetensors"
    save_file({k: v.contiguous() for k, v in ade.hf.state_dict().items()}, str(st))
    grey = _tiny(1, pretrained=str(st))
    conv = next(k for k in _INPUT_CONVS if k in ade.hf.state_dict())
    for key, value in grey.hf.state_dict().items():
        if key.startswith("segformer.") and key != conv:
            torch.testing.assert_close(value, ade.hf.state_dict()[key])
    rgb = ade.hf.state_dict()[conv]
    assert rgb.shape[1] == 3
    torch.testing.assert_close(grey.hf.state_dict()[conv], rgb.sum(dim=1, keepdim=True))
    assert grey.hf.decode_head.classifier.weight.shape[0] == 2


def test_pretrained_file_in_the_other_transformers_naming(tmp_path, no_network):
    # nvidia/* checkpoints use transformers 4 names (encoder.block.0.0.attention.self.query);
    # transformers 5 renamed them (stages.0.blocks.0.attention.q_proj). Both load.
    torch.manual_seed(0)
    src = _tiny(3).eval()
    sd = src.hf.state_dict()
    model_new = any(".stages." in k for k in sd)
    other = {_rename(k, to_new=not model_new): v for k, v in sd.items()}
    assert set(other) != set(sd)
    assert ("segformer.encoder.block.0.0.attention.self.query.weight" in other) == model_new
    path = tmp_path / "other_naming.bin"
    torch.save(other, path)
    loaded = _tiny(3, pretrained=str(path)).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x))


def test_pretrained_errors(tmp_path, no_network):
    with pytest.raises(TumorSegError, match="not found"):
        _tiny(pretrained=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TumorSegError, match="no model.safetensors"):
        _tiny(pretrained=str(tmp_path / "empty"))
    tiny_file = tmp_path / "tiny.pt"
    torch.save(_tiny().state_dict(), tiny_file)
    with pytest.raises(TumorSegError, match="wrong SegFormer variant"):
        create_model("segformer", pretrained=str(tiny_file))  # b0 needs other shapes
    other = tmp_path / "other.pt"
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7)}, other)
    with pytest.raises(TumorSegError, match="no SegFormer"):
        _tiny(pretrained=str(other))


def test_registry_entry_carries_the_paper_preset():
    info = model_info("segformer")
    assert info["paper"] == "002_d2159bea954dfd3c.txt"
    assert info["output"] == "multiclass" and info["out_channels"] == 2
    assert info["class_names"] == ["background", "tumour"]
    preset = info["preset"]
    assert preset["lr"] == pytest.approx(6e-4)
    assert preset["batch_size"] == 10 and preset["epochs"] == 15 and preset["loss"] == "ce"
    from napari_tumorseg.models import get_info
    from napari_tumorseg.training.losses import build_loss

    build_loss(get_info("segformer").preset, mode=info["output"])  # the trainer accepts the preset
