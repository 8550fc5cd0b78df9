"""SETR-style ViT segmenter of seed 003 (Liotta), with a decoder that reaches full size.

Patch embedding (a stride-``patch_size`` convolution, the same map as the paper's linear
layer on flattened patches) plus learned positions, ``depth`` pre-norm Transformer layers
(LayerNorm -> multi-head attention -> residual, LayerNorm -> Linear/ReLU/Linear MLP ->
residual; paper: dim 1024, 8 layers, 8 heads, MLP 2048), tokens back to a (dim, H/p, W/p)
map, then a transposed-convolution decoder.

Fix of the paper's decoder: its code upsamples by x4 (two stride-2 transposed convs, or
x16 in its four-layer variant with 32-pixel patches) and so never returns the input size.
Here the decoder has log2(patch_size) stride-2 transposed convs (each followed by ReLU;
a non-power-of-two remainder gets one last transposed conv with that stride), so the
logits are exactly patch_size times the token grid: the padded input size. The paper's
final sigmoid is left to the loss / inference code: the model returns logits.

Positions are learned on the reference grid (``img_size / patch_size`` squared, 128 / 16
= 8 x 8 by default) and bicubically interpolated for other grids. Any input size works:
zero-padded at the far end to a multiple of ``patch_size``, cropped back.

The paper's constructor derives the patch size from ``num_cuts`` (patch = W / num_cuts);
its comments describe an H/16 token map and its four-layer decoder is x16, so the default
patch size here is 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models.common import crop_to, pad_to_multiple
from napari_tumorseg.models.registry import ModelInfo, TrainingPreset, register_model
from napari_tumorseg.models.unet import build_checked


class TransformerLayer(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU(inplace=True),
                                 nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


def _upsampling_strides(factor: int) -> list[int]:
    strides = []
    while factor % 2 == 0:
        strides.append(2)
        factor //= 2
    if factor > 1:
        strides.append(factor)
    return strides


class SETR(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        img_size: int = 128,
        patch_size: int = 16,
        dim: int = 1024,
        depth: int = 8,
        heads: int = 8,
        mlp_dim: int = 2048,
        decoder_channels: int = 256,
        dropout: float = 0.0,
    ):
        super().__init__()
        if patch_size < 1 or img_size < patch_size or img_size % patch_size:
            raise TumorSegError(
                f"setr: img_size ({img_size}) must be a positive multiple of patch_size ({patch_size})"
            )
        if dim % heads:
            raise TumorSegError(f"setr: dim {dim} is not divisible by heads {heads}")
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        grid = img_size // patch_size
        self.pos_embed = nn.Parameter(torch.randn(1, dim, grid, grid) * 0.02)
        self.layers = nn.Sequential(*(TransformerLayer(dim, heads, mlp_dim, dropout)
                                      for _ in range(depth)))
        ups: list[nn.Module] = []
        ch = dim
        for s in _upsampling_strides(patch_size):
            ups += [nn.ConvTranspose2d(ch, decoder_channels, s, stride=s), nn.ReLU(inplace=True)]
            ch = decoder_channels
        self.decoder = nn.Sequential(*ups, nn.Conv2d(ch, out_channels, 1))

    def positions(self, grid: tuple[int, int]) -> torch.Tensor:
        pos = self.pos_embed
        if tuple(pos.shape[2:]) != tuple(grid):
            pos = F.interpolate(pos, size=tuple(grid), mode="bicubic", align_corners=False)
        return pos

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, spatial = pad_to_multiple(x, self.patch_size)
        t = self.patch_embed(x)
        b, c, gh, gw = t.shape
        t = (t + self.positions((gh, gw))).flatten(2).transpose(1, 2)
        t = self.layers(t)
        t = t.transpose(1, 2).reshape(b, c, gh, gw)
        return crop_to(self.decoder(t), spatial)


@register_model(
    ModelInfo(
        name="setr",
        paper="003_dc64672ffeaa87f7.txt",
        description="SETR-style ViT (8 layers, dim 1024) with a full-resolution deconv decoder",
        dims=2,
        output="binary",
        input_multiple=16,
        input_size=(128, 128),
        in_channels=3,
        out_channels=1,
        class_names=["background", "tumour"],
        # Seed 003: SETR trained with Dice loss, Adam lr 1e-4, ~350 epochs. Batch size,
        # AMP and clipping are not stated; 16, off and none are our choices.
        preset=TrainingPreset(loss="dice", optimizer="adam", lr=1e-4, scheduler="none",
                              batch_size=16, epochs=350, amp=False, grad_clip=None),
        default_config={"img_size": 128, "patch_size": 16, "dim": 1024, "depth": 8, "heads": 8,
                        "mlp_dim": 2048, "decoder_channels": 256, "dropout": 0.0},
        tiny_config={"img_size": 32, "patch_size": 8, "dim": 32, "depth": 2, "heads": 2,
                     "mlp_dim": 64, "decoder_channels": 8},
        pretrained="",
    )
)
def build_setr(in_channels: int, out_channels: int, pretrained: str | None = None,
               **config) -> SETR:
    return build_checked("setr", SETR, in_channels, out_channels, pretrained, config)
