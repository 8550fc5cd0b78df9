"""One checkpoint format: exact round trip, weights_only loading, clear one-line errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from napari_tumorseg.errors import TumorSegError, WriteError
from napari_tumorseg.models import create_model
from napari_tumorseg.models.checkpoint import (
    FORMAT_VERSION,
    checkpoint_summary,
    load_checkpoint,
    save_checkpoint,
)

TINY = {
    "unet": {"width": 4},
    "lintunet": {"width": 4, "heads": 2, "proj_rows": 8, "keep": 4, "ref_size": 64},
    "setr": {"img_size": 32, "patch_size": 8, "dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64,
             "decoder_channels": 8},
}



def _trained(name, in_channels=3, out_channels=1):
    """A model whose weights and BatchNorm statistics differ from a fresh build."""
    torch.manual_seed(0)
    model = create_model(name, in_channels=in_channels, out_channels=out_channels, **TINY[name])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(2, in_channels, 40, 40)).pow(2).mean().backward()
        opt.step()
    return model, opt


def _save(path, model, name, in_channels=3, out_channels=1, **kw):
    return save_checkpoint(
        path, model, model_name=name, config=TINY[name], in_channels=in_channels,
        out_channels=out_channels, preprocessing={"size": [40, 40], "normalize": "zscore"},
        class_names=["background", "tumour"], history=[{"epoch": 1, "loss": 0.5}], **kw,
    )


@pytest.mark.parametrize("name", ["unet", "lintunet", "setr"])
def test_round_trip_gives_identical_outputs(tmp_path, name):
    model, _ = _trained(name)
    path = _save(tmp_path / f"{name}.pt", model, name)
    loaded, ckpt = load_checkpoint(path)
    assert type(loaded) is type(model)
    assert not loaded.training
    model.eval()
    x = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert ckpt["model_name"] == name and ckpt["format_version"] == FORMAT_VERSION
    assert ckpt["class_names"] == ["background", "tumour"]
    assert ckpt["preprocessing"]["normalize"] == "zscore"
    assert ckpt["history"] == [{"epoch": 1, "loss": 0.5}]
    # The full build config is stored, defaults included.
    assert set(TINY[name]) <= set(ckpt["config"])


def test_file_is_weights_only_loadable_and_carries_training_state(tmp_path):
    model, opt = _trained("unet")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.1)
    scaler = torch.amp.GradScaler("cpu")
    extra = {
        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        "numpy_rng": [v.tolist() if isinstance(v, np.ndarray) else v
                      for v in np.random.get_state()],
        "epoch": 7,
    }
    path = _save(tmp_path / "c.pt", model, "unet", extra=extra)
    raw = torch.load(path, weights_only=True)  # no pickled code needed
    assert raw["extra"]["epoch"] == 7
    opt2 = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt2.load_state_dict(raw["extra"]["optimizer"])
    assert opt2.state_dict()["param_groups"][0]["lr"] == 1e-2
    assert torch.equal(raw["extra"]["torch_rng"], extra["torch_rng"])
    summary = checkpoint_summary(raw)
    assert summary["model_name"] == "unet" and summary["epochs"] == 1


def test_unsafe_extra_is_refused_before_writing(tmp_path):
    model, _ = _trained("unet")
    path = tmp_path / "bad.pt"
    with pytest.raises(TumorSegError, match=r"extra\['rng'\]\[1\]: numpy.ndarray"):
        _save(path, model, "unet", extra={"rng": np.random.get_state()})
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary left behind either


def test_overwrite_flag(tmp_path):
    model, _ = _trained("unet")
    path = _save(tmp_path / "a.pt", model, "unet")
    with pytest.raises(WriteError, match="exists"):
        _save(path, model, "unet", overwrite=False)
    _save(path, model, "unet", overwrite=True)


def test_build_false_returns_metadata_only(tmp_path):
    model, _ = _trained("setr")
    path = _save(tmp_path / "s.pt", model, "setr")
    none, ckpt = load_checkpoint(path, build=False)
    assert none is None and ckpt["model_name"] == "setr"


def test_missing_file(tmp_path):
    with pytest.raises(TumorSegError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("damage", ["truncated", "random", "text", "empty"])
def test_corrupt_file_gives_one_line_error(tmp_path, damage):
    model, _ = _trained("unet")
    path = _save(tmp_path / "c.pt", model, "unet")
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "text":
        path.write_text("this is not a checkpoint\n")
    else:
        path.write_bytes(b"")
    with pytest.raises(TumorSegError, match="not a readable checkpoint") as exc:
        load_checkpoint(path)
    assert "\n" not in str(exc.value)


def test_foreign_torch_files(tmp_path):
    model, _ = _trained("unet")
    raw = tmp_path / "raw.pt"
    torch.save(model.state_dict(), raw)
    with pytest.raises(TumorSegError, match="bare state dict"):
        load_checkpoint(raw)
    other = tmp_path / "other.pt"
    torch.save({"hello": 1}, other)
    with pytest.raises(TumorSegError, match="not a napari-tumorseg checkpoint"):
        load_checkpoint(other)


def test_unknown_model_name(tmp_path):
    model, _ = _trained("unet")
    with pytest.raises(TumorSegError, match="unknown model 'nonet'"):
        save_checkpoint(tmp_path / "x.pt", model, model_name="nonet", config={}, in_channels=3,
                        out_channels=1, preprocessing={}, class_names=[], history=[])
    path = _save(tmp_path / "u.pt", model, "unet")
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_name"] = "nonet"
    torch.save(ckpt, path)
    with pytest.raises(TumorSegError, match="unknown model 'nonet'"):
        load_checkpoint(path)


def test_shape_mismatch_names_the_key(tmp_path):
    model, _ = _trained("unet")
    path = _save(tmp_path / "u.pt", model, "unet")
    ckpt = torch.load(path, weights_only=True)
    ckpt["in_channels"] = 4  # the stored weights are for 3 input channels
    torch.save(ckpt, path)
    with pytest.raises(TumorSegError, match=r"shape mismatch at 'downs.0.conv.conv1.weight'"):
        load_checkpoint(path)


def test_pretrained_initialisation(tmp_path):
    model, _ = _trained("unet")
    model.eval()
    ours = _save(tmp_path / "ours.pt", model, "unet")
    raw = tmp_path / "raw.pt"
    torch.save(model.state_dict(), raw)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, wrapped)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        for p in (ours, raw, wrapped):
            init = create_model("unet", in_channels=3, pretrained=str(p), **TINY["unet"]).eval()
            assert torch.equal(init(x), ref)
    with pytest.raises(TumorSegError, match="shape mismatch"):
        create_model("unet", in_channels=1, pretrained=str(raw), **TINY["unet"])
    junk = tmp_path / "junk.pt"
    torch.save({"a": [1, 2]}, junk)
    with pytest.raises(TumorSegError, match="no model weights"):
        create_model("unet", in_channels=3, pretrained=str(junk), **TINY["unet"])


def test_warm_start_widens_a_click_model_to_more_sequences_with_the_same_answers():
    """The shipped FLAIR + T1c click model, widened to FLAIR, T1, T1c, T2: the new sequences
    start at zero weight, so whatever T1 and T2 hold the answers are the checkpoint's."""
    import torch

    from napari_tumorseg.interactive.engines import volume_starter_checkpoint
    from napari_tumorseg.models import create_model
    from napari_tumorseg.models.checkpoint import is_checkpoint_file, load_checkpoint, warm_start

    path = volume_starter_checkpoint()
    old, ck = load_checkpoint(path)
    old.float()
    assert ck["preprocessing"]["channel_names"] == ["FLAIR", "T1c"] and is_checkpoint_file(path)
    new = create_model("unet", in_channels=4, out_channels=3, **ck["config"]).eval()
    note = warm_start(new, path, ["T2", "FLAIR", "T1", "T1c"])
    assert note.endswith("widened from FLAIR, T1c to T2, FLAIR, T1, T1c (T2, T1 at zero weight)")
    n_prompt = old.encoding.n_channels
    torch.manual_seed(0)
    flair, t1c = torch.randn(2, 1, 64, 64), torch.randn(2, 1, 64, 64)
    prompts = torch.rand(2, n_prompt, 64, 64)
    t1, t2 = torch.randn(2, 1, 64, 64) * 5, torch.randn(2, 1, 64, 64) * 5
    with torch.no_grad():
        want = old(torch.cat([flair, t1c, prompts], 1))
        got = new(torch.cat([t2, flair, t1, t1c, prompts], 1))
    assert torch.allclose(got, want, atol=1e-4)
    # a run that does not read every sequence of the checkpoint cannot take its weights
    narrower = create_model("unet", in_channels=3, out_channels=3, **ck["config"]).eval()
    with pytest.raises(TumorSegError, match="no T1c scan"):
        warm_start(narrower, path, ["T1", "T2", "FLAIR"])
    assert not is_checkpoint_file(__file__)
