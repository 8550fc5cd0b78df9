"""LinTUNet (seed 000): sparse Linformer bottleneck, any N, attention memory linear in N."""

from __future__ import annotations

import pytest
import torch

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models import create_model, get_info, model_info
from napari_tumorseg.models.lintunet import LinTUNet, SparseLinformerAttention

TINY = {"width": 4, "heads": 2, "proj_rows": 8, "keep": 4, "ref_size": 64}



@pytest.mark.parametrize("in_channels", [1, 3, 4])
def test_output_shape_and_gradients(in_channels):
    torch.manual_seed(0)
    model = create_model("lintunet", in_channels=in_channels, out_channels=1, **TINY)
    # 64x64 is the reference grid (4x4 tokens); the others resample E and F.
    for size in [(33, 47), (64, 64), (100, 36)]:
        model.zero_grad()
        y = model(torch.randn(2, in_channels, *size))
        assert y.shape == (2, 1, *size)
        assert torch.isfinite(y).all()
        y.pow(2).mean().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert p.grad.abs().sum() > 0, name


def test_paper_defaults():
    model = create_model("lintunet")
    assert isinstance(model, LinTUNet)
    block = model.attention.blocks[0]
    attn = block.attn
    assert attn.to_q.in_features == 512  # tokens from the pooled 1/16 map of 512 channels
    assert model.bottleneck.conv1.out_channels == 1024
    assert tuple(attn.E.shape) == (64, 16, 16)  # r = 64 rows, learned on the 16x16 grid
    assert attn.keep == 32 and attn.heads == 8
    assert isinstance(block.norm1, torch.nn.LayerNorm)
    assert block.ffn[0].out_features == 4 * 512
    info = model_info("lintunet")
    assert info["preset"]["loss"] == "bce" and info["preset"]["grad_clip"] == 1.0


def test_sparse_step_keeps_top_rows_by_norm():
    torch.manual_seed(0)
    attn = SparseLinformerAttention(8, heads=2, proj_rows=6, keep=3, ref_grid=(4, 4))
    with torch.no_grad():
        attn.E.copy_(torch.randn_like(attn.E) * 0.01)
        for row in (1, 3, 4):
            attn.E[row] *= 100  # the three most significant rows
    proj = attn.sparse_projection(attn.E, (4, 4))
    assert proj.shape == (3, 16)
    torch.testing.assert_close(proj, attn.E[[1, 3, 4]].flatten(1))

    x = torch.randn(2, 16, 8)
    ref = attn(x, (4, 4))
    with torch.no_grad():
        attn.E[0] *= 2  # a dropped row does not take part in the attention
    torch.testing.assert_close(attn(x, (4, 4)), ref)
    with torch.no_grad():
        attn.E[3] *= 2  # a kept row does
    assert not torch.allclose(attn(x, (4, 4)), ref)


def test_projection_keeps_scale_across_grids():
    """E resampled to a finer grid sums to about the same: projections keep magnitude."""
    torch.manual_seed(0)
    attn = SparseLinformerAttention(8, heads=1, proj_rows=4, keep=4, ref_grid=(8, 8))
    with torch.no_grad():
        attn.E.copy_(torch.rand_like(attn.E))
    ref = attn.sparse_projection(attn.E, (8, 8)).sum(1)
    for grid in [(16, 16), (32, 24), (4, 4)]:
        proj = attn.sparse_projection(attn.E, grid)
        assert proj.shape == (4, grid[0] * grid[1])
        torch.testing.assert_close(proj.sum(1), ref, rtol=0.15, atol=0.0)


def _peak_bytes(fn) -> int:
    """Peak CPU bytes allocated by torch while ``fn`` runs (profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with torch.no_grad():
            fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    return peak


def _full_attention(x: torch.Tensor) -> torch.Tensor:
    # Reference O(N^2) attention, to show the probe does see quadratic growth.
    w = torch.softmax(x @ x.transpose(1, 2) / x.shape[-1] ** 0.5, dim=-1)
    return w @ x


def test_attention_memory_grows_linearly_with_tokens():
    torch.manual_seed(0)
    dim = 16
    attn = SparseLinformerAttention(dim, heads=2, proj_rows=16, keep=8, ref_grid=(16, 16)).eval()
    peaks, full = {}, {}
    for g in (32, 64):  # N = 1024 and 4096 tokens
        x = torch.randn(1, g * g, dim)
        peaks[g] = _peak_bytes(lambda: attn(x, (g, g)))
        full[g] = _peak_bytes(lambda: _full_attention(x))
    ratio = peaks[64] / peaks[32]
    full_ratio = full[64] / full[32]
    assert 3.0 < ratio < 5.0, (peaks, ratio)  # 4x tokens -> ~4x memory
    assert full_ratio > 10.0, (full, full_ratio)  # the probe does catch N^2
    assert peaks[64] < full[64] / 20


def test_works_at_512():
    torch.manual_seed(0)
    model = create_model("lintunet", **{**TINY, "ref_size": 256}).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, 512, 512))  # 32x32 = 1024 tokens, 4x the reference
    assert y.shape == (1, 1, 512, 512)
    assert torch.isfinite(y).all()


def test_bad_config_is_one_line_error():
    with pytest.raises(TumorSegError, match="keep"):
        create_model("lintunet", **{**TINY, "keep": 9})
    with pytest.raises(TumorSegError, match="ref_size"):
        create_model("lintunet", **{**TINY, "ref_size": 50})


def test_tiny_config_from_registry():
    info = get_info("lintunet")
    model = create_model("lintunet", **info.tiny_config)
    y = model(torch.randn(2, info.in_channels, 48, 80))
    assert y.shape == (2, 1, 48, 80)
