"""bf16 where the CPU has it, fp32 elsewhere, fp16 autocast on CUDA; forced choices kept."""

import pytest
import torch

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.precision import cpu_description, resolve


def test_auto_follows_the_processor(monkeypatch):
    monkeypatch.setenv("TUMORSEG_CPU_BF16", "1")
    p = resolve("auto", "cpu")
    assert p.name == "bf16" and p.dtype is torch.bfloat16
    monkeypatch.setenv("TUMORSEG_CPU_BF16", "0")
    p = resolve(None, "cpu")
    assert p.name == "fp32" and p.dtype is None and "no native bf16" in p.reason
    # a forced bf16 on a CPU without it runs, and says it is emulated
    assert "emulates" in resolve("bf16", "cpu").reason
    assert resolve("fp32", "cpu").dtype is None


def test_cuda_keeps_fp16_autocast_unless_told():
    assert resolve("auto", "cuda").name == "fp16"
    assert resolve("fp32", "cuda").dtype is None
    assert resolve("bf16", "cuda").dtype is torch.bfloat16


def test_bad_choice_is_one_line():
    with pytest.raises(TumorSegError, match="precision must be one of"):
        resolve("fp8", "cpu")


def test_bf16_autocast_runs_convolutions_in_bf16_and_stays_close():
    from napari_tumorseg.models import create_model

    torch.manual_seed(0)
    model = create_model("unet", in_channels=1, out_channels=1, width=4).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with resolve("bf16", "cpu").autocast():
            low = model(x)
    assert low.dtype == torch.bfloat16
    # same mask where the fp32 logit is not within bf16's rounding of the threshold
    sure = ref.abs() > 0.05 * ref.abs().max()
    assert ((low.float() > 0) == (ref > 0))[sure].float().mean() > 0.99


def test_the_cpu_is_described_for_benchmarks():
    text = cpu_description()
    assert "cores" in text and ("bf16" in text)


def test_a_2d_model_on_the_cpu_runs_channels_last_with_the_same_output():
    from napari_tumorseg.models import create_model
    from napari_tumorseg.precision import prefer_channels_last

    torch.manual_seed(0)
    flat = create_model("unet", in_channels=2, out_channels=1, width=4).eval()
    nhwc = create_model("unet", in_channels=2, out_channels=1, width=4).eval()
    nhwc.load_state_dict(flat.state_dict())
    assert prefer_channels_last(nhwc, "cpu", 2)
    conv = next(m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 2, 64, 64)
    with torch.no_grad():
        assert torch.allclose(nhwc(x), flat(x), atol=1e-5)
    # a checkpoint saved from it loads into a model laid out as usual
    again = create_model("unet", in_channels=2, out_channels=1, width=4).eval()
    again.load_state_dict(nhwc.state_dict())
    with torch.no_grad():
        assert torch.allclose(again(x), flat(x), atol=1e-5)


def test_3d_and_cuda_models_keep_their_layout():
    from napari_tumorseg.precision import prefer_channels_last

    conv3 = torch.nn.Conv3d(2, 4, 3)
    assert not prefer_channels_last(conv3, "cpu", 3)
    assert conv3.weight.is_contiguous()
    conv2 = torch.nn.Conv2d(2, 4, 3)
    assert not prefer_channels_last(conv2, "cuda", 2)  # only moved where it was measured
    assert conv2.weight.is_contiguous()
