"""Attention blocks: the properties their papers define, and the local-weights helpers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models.blocks import (
    CBAM,
    AttentionGate,
    EfficientAttention,
    ResNeXtBlock,
    SEBlock,
    adapt_input_conv,
    load_state_dict_file,
)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op produces (the memory peak of one intermediate)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _largest_intermediate(fn, x: torch.Tensor) -> int:
    mode = _LargestTensor()
    with torch.no_grad(), mode:
        fn(x)
    return mode.largest


def _naive_softmax_attention(module: EfficientAttention, x: torch.Tensor) -> torch.Tensor:
    # Dot-product attention with the module's own projections: builds the n x n matrix.
    n, _, h, w = x.shape
    q = module.queries(x).flatten(2)
    k = module.keys(x).flatten(2)
    v = module.values(x).flatten(2)
    attn = (q.transpose(1, 2) @ k).softmax(dim=-1)  # (N, n, n)
    return (v @ attn.transpose(1, 2)).reshape(n, -1, h, w)


def test_efficient_attention_memory_is_linear_in_tokens():
    torch.manual_seed(0)
    ea = EfficientAttention(16, key_channels=8, heads=2)
    small, large = torch.randn(1, 16, 16, 16), torch.randn(1, 16, 32, 32)  # 256 vs 1024 tokens
    eff = _largest_intermediate(ea.attend, large) / _largest_intermediate(ea.attend, small)
    naive = _largest_intermediate(lambda t: _naive_softmax_attention(ea, t), large) / _largest_intermediate(
        lambda t: _naive_softmax_attention(ea, t), small
    )
    assert eff == pytest.approx(4.0, rel=0.05)  # 4x tokens -> 4x memory
    assert naive == pytest.approx(16.0, rel=0.05)  # the quadratic baseline


def test_efficient_attention_with_scaling_equals_dot_product_attention():
    # Shen et al.: with rho = Y / sqrt(n) both orders of multiplication give the same result.
    torch.manual_seed(0)
    ea = EfficientAttention(8, key_channels=4, value_channels=6, heads=1, normalization="scaling").double()
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    n = 35
    q = ea.queries(x).flatten(2)
    k = ea.keys(x).flatten(2)
    v = ea.values(x).flatten(2)
    attn = (q.transpose(1, 2) @ k) / n  # (N, n, n), the quadratic form
    expected = (v @ attn.transpose(1, 2)).reshape(2, 6, 5, 7)
    torch.testing.assert_close(ea.attend(x), expected)
    torch.testing.assert_close(ea(x), x + ea.reprojection(expected))


def test_efficient_attention_heads_follow_the_paper_normalisation():
    torch.manual_seed(1)
    ea = EfficientAttention(8, key_channels=4, value_channels=8, heads=2).double()
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    q = ea.queries(x).flatten(2)[0]
    k = ea.keys(x).flatten(2)[0]
    v = ea.values(x).flatten(2)[0]
    parts = []
    for hq, hk, hv in zip(q.split(2), k.split(2), v.split(4)):
        ctx = hk.softmax(dim=1) @ hv.T  # keys normalised over positions
        parts.append(ctx.T @ hq.softmax(dim=0))  # queries normalised over features
    expected = torch.cat(parts).reshape(1, 8, 3, 4)
    torch.testing.assert_close(ea.attend(x), expected)


def test_attention_gate_output_is_x_times_psi_in_unit_interval():
    torch.manual_seed(0)
    gate = AttentionGate(x_channels=6, g_channels=10)
    x = torch.randn(2, 6, 12, 9)
    g = torch.randn(2, 10, 6, 5)  # coarser gating signal: resized to x's grid
    psi = gate.coefficients(x, g)
    assert psi.shape == (2, 1, 12, 9)
    assert psi.min() >= 0 and psi.max() <= 1
    assert psi.std() > 0  # really spatial, not a constant
    torch.testing.assert_close(gate(x, g), x * psi)


def test_se_scales_each_channel_by_one_factor_in_unit_interval():
    torch.manual_seed(0)
    se = SEBlock(32, reduction=16)
    x = torch.rand(2, 32, 6, 6) + 0.1
    ratio = se(x) / x
    assert ratio.min() > 0 and ratio.max() < 1
    flat = ratio.flatten(2)
    torch.testing.assert_close(flat.max(dim=2).values, flat.min(dim=2).values)


def test_cbam_attenuates_channels_and_positions():
    torch.manual_seed(0)
    cbam = CBAM(16)
    x = torch.rand(2, 16, 9, 11) + 0.1
    ratio = cbam(x) / x
    assert ratio.shape == x.shape
    assert ratio.min() > 0 and ratio.max() < 1
    # Spatial attention varies over positions within a channel.
    assert ratio[0, 0].std() > 0


def test_resnext_block_is_grouped_and_residual():
    block = ResNeXtBlock(64, cardinality=32)
    assert block.grouped[0].groups == 32
    assert block.grouped[0].in_channels == 32 and block.reduce[0].out_channels == 32
    # With the expand branch silenced the block is ReLU(x): the shortcut is the identity.
    torch.nn.init.zeros_(block.expand[1].weight)
    block.eval()
    x = torch.randn(1, 64, 5, 5)
    torch.testing.assert_close(block(x), F.relu(x))
    narrow = ResNeXtBlock(6, 10, cardinality=32)  # groups shrink to fit narrow widths
    assert narrow(torch.randn(1, 6, 4, 4)).shape == (1, 10, 4, 4)


def test_adapt_input_conv_keeps_grey_and_multichannel_responses():
    torch.manual_seed(0)
    w = torch.randn(8, 3, 3, 3)
    grey = torch.randn(1, 1, 10, 10)
    torch.testing.assert_close(
        F.conv2d(grey, adapt_input_conv(w, 1)), F.conv2d(grey.repeat(1, 3, 1, 1), w), rtol=1e-5, atol=1e-5
    )
    w4 = adapt_input_conv(w, 4)
    assert w4.shape == (8, 4, 3, 3)
    # Equal channels give the RGB network's response to that image as grey RGB.
    torch.testing.assert_close(
        F.conv2d(grey.repeat(1, 4, 1, 1), w4), F.conv2d(grey.repeat(1, 3, 1, 1), w), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(TumorSegError):
        adapt_input_conv(torch.randn(8, 2, 3, 3), 4)


def test_load_state_dict_file_unwraps_and_fails_cleanly(tmp_path):
    sd = {"a.weight": torch.ones(2, 2)}
    p = tmp_path / "w.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, p)
    assert list(load_state_dict_file(p, "x")) == ["a.weight"]

    from safetensors.torch import save_file

    st = tmp_path / "w.safetensors"
    save_file(sd, str(st))
    torch.testing.assert_close(load_state_dict_file(st, "x")["a.weight"], sd["a.weight"])

    with pytest.raises(TumorSegError, match="not found"):
        load_state_dict_file(tmp_path / "missing.pt", "x")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(TumorSegError, match="cannot read"):
        load_state_dict_file(bad, "x")
    notdict = tmp_path / "list.pt"
    torch.save([torch.ones(1)], notdict)
    with pytest.raises(TumorSegError, match="not a state dict"):
        load_state_dict_file(notdict, "x")
