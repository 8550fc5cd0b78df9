"""LinTUNet (seed 000): the U-Net with a Sparse Linformer self-attention at the bottleneck.

Tokens are the pixels of the pooled 1/16 map (``8 * width`` = 512 channels), N = h * w.
Per head, keys and values are compressed along the token axis by learned projections
E, F in R^{r x N} (Linformer): K' = S(E) K, V' = S(F) V, and the attention matrix is
softmax(Q K'^T / sqrt(d)) of shape N x k instead of N x N.

Sparse step S(.): of the r learned rows of E (and of F), only the ``keep`` rows with the
largest L2 norm are used (ties broken by index). The selection is recomputed at every
forward pass from the current weights, so rows can enter or leave the kept set during
training; rows outside it receive no gradient in that step.

Variable N (the public notebook hard-wires N = 16*16 and fails on any other input size):
E and F are learned as spatial maps of shape (r, h0, w0) on a reference token grid
(``ref_grid``, 16 x 16 = the 256^2 input of the paper). For a token grid (h, w) each kept
row is resampled bilinearly to (h, w) and scaled by (h0*w0)/(h*w) so that the projection,
a weighted sum over tokens, keeps its magnitude; at the reference grid E and F are used
exactly as learned. Resampling costs O(k N) and the attention O(N k d): linear in N.

Block (pre-norm Transformer, as the ``linformer`` package the notebook uses):
x + Attn(LN(x)), then x + FFN(LN(x)) with FFN = Linear(d, 4d), GELU, Linear(4d, d).
Back to (B, C, h, w) before the bottleneck convolutions and the decoder.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models.registry import ModelInfo, TrainingPreset, register_model
from napari_tumorseg.models.unet import CPU_RECIPE, MULTIPLE, SEED000_PRESET, UNet, build_checked


class SparseLinformerAttention(nn.Module):
    """Multi-head Linformer self-attention with top-``keep`` row selection of E and F.

    Input and output: (B, N, dim) tokens laid out row-major on an (h, w) grid.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        proj_rows: int = 64,
        keep: int = 32,
        ref_grid: tuple[int, int] = (16, 16),
        dropout: float = 0.0,
    ):
        super().__init__()
        if dim % heads:
            raise TumorSegError(f"lintunet: attention dim {dim} is not divisible by heads {heads}")
        if not 1 <= keep <= proj_rows:
            raise TumorSegError(f"lintunet: keep must be in 1..proj_rows ({proj_rows}), got {keep}")
        self.heads = heads
        self.keep = keep
        self.ref_grid = tuple(int(s) for s in ref_grid)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.dropout = dropout
        bound = 1.0 / math.sqrt(proj_rows)  # the linformer package's init of E, F
        self.E = nn.Parameter(torch.empty(proj_rows, *self.ref_grid).uniform_(-bound, bound))
        self.F = nn.Parameter(torch.empty(proj_rows, *self.ref_grid).uniform_(-bound, bound))

    def sparse_projection(self, weight: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """S(E) resampled to ``grid``: (keep, h*w)."""
        norms = weight.detach().flatten(1).norm(dim=1)
        idx = torch.topk(norms, self.keep, sorted=False).indices.sort().values
        rows = weight[idx]
        if tuple(grid) != self.ref_grid:
            rows = F.interpolate(rows.unsqueeze(0), size=tuple(grid), mode="bilinear",
                                 align_corners=False).squeeze(0)
            rows = rows * (self.ref_grid[0] * self.ref_grid[1] / (grid[0] * grid[1]))
        return rows.flatten(1)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, n, c = x.shape
        if n != grid[0] * grid[1]:
            raise ValueError(f"{n} tokens do not fill a {grid} grid")
        e = self.sparse_projection(self.E, grid).to(x.dtype)
        f = self.sparse_projection(self.F, grid).to(x.dtype)
        d = c // self.heads
        q = self.to_q(x).view(b, n, self.heads, d).transpose(1, 2)  # (B, H, N, d)
        # Compress along tokens before splitting heads: (k, N) @ (B, N, C) -> (B, k, C).
        k = torch.matmul(e, self.to_k(x)).view(b, self.keep, self.heads, d).transpose(1, 2)
        v = torch.matmul(f, self.to_v(x)).view(b, self.keep, self.heads, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )  # attention weights are (B, H, N, keep): linear in N
        return self.to_out(out.transpose(1, 2).reshape(b, n, c))


class LinformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, proj_rows: int, keep: int,
                 ref_grid: tuple[int, int], ffn_mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SparseLinformerAttention(dim, heads, proj_rows, keep, ref_grid, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(ffn_mult * dim, dim),
        )

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), grid)
        return x + self.ffn(self.norm2(x))


class SparseLinformerBottleneck(nn.Module):
    """(B, C, h, w) -> tokens -> ``depth`` Linformer blocks -> (B, C, h, w)."""

    def __init__(self, dim: int, depth: int = 1, heads: int = 8, proj_rows: int = 64,
                 keep: int = 32, ref_grid: tuple[int, int] = (16, 16), ffn_mult: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(
            LinformerBlock(dim, heads, proj_rows, keep, ref_grid, ffn_mult, dropout)
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        for block in self.blocks:
            t = block(t, (h, w))
        return t.transpose(1, 2).reshape(b, c, h, w)


class LinTUNet(UNet):
    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 64,
                 dropout: float = 0.0, depth: int = 1, heads: int = 8, proj_rows: int = 64,
                 keep: int = 32, ref_size: int = 256, ffn_mult: int = 4,
                 attn_dropout: float = 0.0, norm: str = "batch"):
        if ref_size < MULTIPLE or ref_size % MULTIPLE:
            raise TumorSegError(f"lintunet: ref_size must be a multiple of {MULTIPLE}, got {ref_size}")
        grid = (ref_size // MULTIPLE,) * 2
        attention = SparseLinformerBottleneck(
            8 * width, depth, heads, proj_rows, keep, grid, ffn_mult, attn_dropout
        )
        super().__init__(in_channels, out_channels, width, dropout, bottleneck_attention=attention,
                         norm=norm)


@register_model(
    ModelInfo(
        name="lintunet",
        paper="000_dcaa3c9462ad4a38.txt",
        description="LinTUNet: U-Net with a Sparse Linformer attention bottleneck (any input size)",
        dims=2,
        output="binary",
        input_multiple=MULTIPLE,
        input_size=(256, 256),
        in_channels=1,
        out_channels=1,
        class_names=["background", "tumour"],
        preset=TrainingPreset(**SEED000_PRESET),
        default_config={"width": 64, "dropout": 0.0, "depth": 1, "heads": 8, "proj_rows": 64,
                         "keep": 32, "ref_size": 256, "ffn_mult": 4, "attn_dropout": 0.0},
        tiny_config={"width": 4, "heads": 2, "proj_rows": 8, "keep": 4, "ref_size": 64},
        pretrained="",
        # The U-Net's CPU recipe (its step costs 1.05x the U-Net's; benchmarks/RESULTS_models.md).
        cpu_recipe=CPU_RECIPE,
    )
)
def build_lintunet(in_channels: int, out_channels: int, pretrained: str | None = None,
                   **config) -> LinTUNet:
    return build_checked("lintunet", LinTUNet, in_channels, out_channels, pretrained, config)
