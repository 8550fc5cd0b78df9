"""GLIMS (seed 004, Yazici et al. 2024): attention-guided lightweight multi-scale hybrid 3D net.

Layout (paper Fig. 1-4, checked against the authors' public code for the points the text
leaves open), for width ``f`` (paper 24) and a 96^3 patch:

    stem 1x1x1 -> f @96
    DMSF1 (2x DACB, conv k2 s2)  skip f @96   -> 2f @48
    DMSF2                        skip 2f @48  -> 4f @24
    DMSF3                        skip 4f @24  -> 8f @12
    Swin stage (depth 2)                         8f @12
    DMSF4                        skip 8f @12  -> 16f @6
    Swin stage (depth 6) + patch merging  skip 16f @6 -> 32f @3   (32f = 768: "embed 768")
    Swin bottleneck (depth 2)                    32f @3
    Swin up stage (patch expanding, skip fuse, depth 6) -> 16f @6
    DMSU4 -> 8f @12, Swin stage (depth 2), DMSU3 -> 4f @24, DMSU2 -> 2f @48, DMSU1 -> f @96
    every skip goes through a CSAB; 1x1x1 heads on DMSU1..DMSU4 (scales 1, 1/2, 1/4, 1/8).

Swin stages reuse MONAI's ``SwinTransformerBlock`` (window 7, shifted every second block,
heads 6/12/24 i.e. 32 channels a head, MLP ratio 4, PReLU as in the authors' code); a
window larger than the token grid shrinks to the grid, as in Swin UNETR.

Outputs are region logits (WT, TC, ET; apply a sigmoid). In training mode the net returns
the list ``[full, 1/2, 1/4, 1/8]`` for deep supervision (paper Eq. 3); in eval mode only the
full-resolution tensor, so inference code never sees a list.

Choices where paper and code disagree or the paper is silent (all documented in ``ModelInfo``):

* CSAB spatial branch: the paper says a 1x1x1 conv on [max, mean] then a sigmoid. The
  public code uses a 7^3 conv followed by ``LayerNorm`` over its single channel, which
  makes the branch a constant (the norm of one value is 0) so the conv never learns. We
  follow the paper (``csab_kernel=1``; 7 is available). Parameter difference: 3.4k.
* Patch merging uses the correct 8-neighbour gather (MONAI ``PatchMergingV2``); the public
  code uses MONAI's legacy ``PatchMerging`` that gathers two sub-voxels twice. Same weights.
* Learned position embeddings are sized for ``img_size`` (paper: 96^3). Other grids (any
  input padded to a multiple of 32) get them trilinearly resized instead of failing.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_tumorseg.brats import REGION_NAMES
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models.common import AnySizeSegmenter
from napari_tumorseg.models.registry import ModelInfo, TrainingPreset, register_model


def _swin():
    """MONAI's Swin building blocks, imported on first use.

    Importing MONAI takes seconds (it loads most of its sub-packages); deferring it keeps
    ``import napari_tumorseg.models`` — and so every CLI call and dock — fast.
    """
    from monai.networks.nets import swin_unetr

    return swin_unetr

INPUT_MULTIPLE = 32  # five halvings: 96 -> 3 at the bottleneck


def _triple(v: int | Sequence[int], what: str) -> tuple[int, int, int]:
    t = (int(v),) * 3 if isinstance(v, (int, float)) else tuple(int(i) for i in v)
    if len(t) != 3:
        raise TumorSegError(f"glims: {what} needs 1 or 3 values, got {v!r}")
    return t  # type: ignore[return-value]


class ConvNormAct(nn.Sequential):
    """Conv (or transposed conv) -> InstanceNorm (no affine) -> PReLU, the code's conv unit."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, transposed: bool = False):
        conv_cls = nn.ConvTranspose3d if transposed else nn.Conv3d
        super().__init__(
            conv_cls(cin, cout, kernel, stride=stride, padding=0),
            nn.InstanceNorm3d(cout),
            nn.PReLU(),
        )


class DepthwiseDilated(nn.Sequential):
    """One DACB branch: depthwise 3^3 conv at a dilation, per-channel norm, PReLU."""

    def __init__(self, channels: int, dilation: int):
        super().__init__(
            nn.Conv3d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels),
            nn.GroupNorm(channels, channels),
            nn.PReLU(),
        )


class DACB(nn.Module):
    """Dilated Feature Aggregator Convolutional Block (paper Fig. 2).

    Three parallel depthwise 3^3 convs (dilation 1, 2, 3) -> concat (3C) -> 1x1x1 to
    ``hidden`` -> 1x1x1 back to C ("gradually reduces the channel size") -> + input ->
    instance norm -> PReLU.
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.branches = nn.ModuleList(DepthwiseDilated(channels, d) for d in (1, 2, 3))
        self.reduce = nn.Sequential(ConvNormAct(3 * channels, hidden), ConvNormAct(hidden, channels))
        self.norm = nn.InstanceNorm3d(channels)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.cat([b(x) for b in self.branches], dim=1)
        return self.act(self.norm(x + self.reduce(z)))


class DMSF(nn.Module):
    """Depth-wise multi-scale feature extraction: 2x DACB (the skip), then a k2 s2 conv doubling C."""

    def __init__(self, channels: int):
        super().__init__()
        self.blocks = nn.Sequential(DACB(channels, 2 * channels), DACB(channels, 2 * channels))
        self.down = ConvNormAct(channels, 2 * channels, kernel=2, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.blocks(x)
        return self.down(skip), skip


class DMSU(nn.Module):
    """Depth-wise multi-scale upsampling: 2^3 transposed conv 2C -> C, concat the CSAB skip,
    1x1x1 2C -> C, then 2x DACB."""

    def __init__(self, channels: int):
        super().__init__()
        self.up = ConvNormAct(2 * channels, channels, kernel=2, stride=2, transposed=True)
        self.fuse = ConvNormAct(2 * channels, channels)
        self.blocks = nn.Sequential(DACB(channels, 2 * channels), DACB(channels, 2 * channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.fuse(torch.cat([self.up(x), skip], dim=1))
        return self.blocks(x)


class CSAB(nn.Module):
    """Channel and Spatial-wise Attention Block (paper Fig. 4), two parallel gates multiplied.

    Channel gate: global avg- and max-pool -> shared MLP (C -> C/2 -> C) -> sum -> sigmoid.
    Spatial gate: per-voxel max and mean over channels -> conv (1x1x1 in the paper) -> sigmoid.
    """

    def __init__(self, channels: int, reduction: int = 2, spatial_kernel: int = 1):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.spatial = nn.Conv3d(2, 1, spatial_kernel, padding=spatial_kernel // 2)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        n, c = y.shape[:2]
        flat = y.reshape(n, c, -1)
        channel = torch.sigmoid(self.mlp(flat.mean(-1)) + self.mlp(flat.amax(-1))).reshape(n, c, 1, 1, 1)
        pooled = torch.cat([y.amax(1, keepdim=True), y.mean(1, keepdim=True)], dim=1)
        spatial = torch.sigmoid(self.spatial(pooled))
        return y * (channel * spatial)


def _fit_positions(pos: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    # Positions are learned for the configured patch; resizing them lets any padded input
    # through (the public code only accepts its training size).
    if tuple(pos.shape[2:]) == tuple(grid):
        return pos
    return F.interpolate(pos, size=tuple(grid), mode="trilinear", align_corners=False)


def _channel_norm(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free layer norm over channels of (N, C, D, H, W) (the code's ``proj_out``)."""
    return F.layer_norm(x.movedim(1, -1), x.shape[1:2]).movedim(-1, 1)


class SwinBlocks(nn.Module):
    """``depth`` MONAI Swin blocks, W-MSA then SW-MSA alternately (paper Eq. 1)."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.window = (window,) * 3
        self.shift = (window // 2,) * 3
        self.blocks = nn.ModuleList(
            _swin().SwinTransformerBlock(
                dim=dim,
                num_heads=heads,
                window_size=self.window,
                shift_size=(0, 0, 0) if i % 2 == 0 else self.shift,
                mlp_ratio=mlp_ratio,
                qkv_bias=True,
                drop_path=drop_path,
                act_layer="PRELU",
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, D, H, W) -> same shape."""
        grid = x.shape[2:]
        window, shift = _swin().get_window_size(grid, self.window, self.shift)
        padded = [int(math.ceil(s / w)) * w for s, w in zip(grid, window)]
        mask = _swin().compute_mask(padded, window, shift, x.device)
        x = x.permute(0, 2, 3, 4, 1).contiguous()
        for blk in self.blocks:
            x = blk(x, mask)
        return x.permute(0, 4, 1, 2, 3).contiguous()


class SwinStage(nn.Module):
    """Learned position embedding + Swin blocks + channel norm; with ``merge`` also the
    2x2x2 patch-merged (C -> 2C, half resolution) tensor."""

    def __init__(self, dim: int, grid: tuple[int, int, int], depth: int, heads: int, window: int,
                 mlp_ratio: float, drop_path: float, merge: bool = False):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, dim, *grid))
        nn.init.trunc_normal_(self.pos, std=0.02, a=-2.0, b=2.0)
        self.blocks = SwinBlocks(dim, depth, heads, window, mlp_ratio, drop_path)
        self.merge = _swin().PatchMergingV2(dim, nn.LayerNorm, spatial_dims=3) if merge else None

    def forward(self, x: torch.Tensor):
        x = self.blocks(x + _fit_positions(self.pos, x.shape[2:]))
        if self.merge is None:
            return _channel_norm(x)
        down = self.merge(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        return _channel_norm(down), _channel_norm(x)


class PatchExpand(nn.Module):
    """Inverse of patch merging: linear 2C -> 8C, shuffle into 2x2x2 voxels of C, layer norm."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = in_dim // 2
        self.expand = nn.Linear(in_dim, 8 * self.out_dim, bias=False)
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, d, h, w = x.shape
        y = self.expand(x.permute(0, 2, 3, 4, 1))  # N D H W (2 2 2 C)
        y = y.reshape(n, d, h, w, 2, 2, 2, self.out_dim)
        y = y.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(n, 2 * d, 2 * h, 2 * w, self.out_dim)
        return self.norm(y).permute(0, 4, 1, 2, 3)


class SwinUpStage(nn.Module):
    """Decoder Swin stage: patch expanding 2C -> C, + positions, concat the skip, 1x1x1 2C -> C,
    Swin blocks, channel norm."""

    def __init__(self, dim: int, grid: tuple[int, int, int], depth: int, heads: int, window: int,
                 mlp_ratio: float, drop_path: float):
        super().__init__()
        self.expand = PatchExpand(2 * dim)
        self.pos = nn.Parameter(torch.zeros(1, dim, *grid))
        nn.init.trunc_normal_(self.pos, std=0.02, a=-2.0, b=2.0)
        self.fuse = ConvNormAct(2 * dim, dim)
        self.blocks = SwinBlocks(dim, depth, heads, window, mlp_ratio, drop_path)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.expand(x)
        x = x + _fit_positions(self.pos, x.shape[2:])
        x = self.fuse(torch.cat([x, skip], dim=1))
        return _channel_norm(self.blocks(x))


class GLIMSNet(nn.Module):
    """The GLIMS network proper; needs spatial sizes divisible by 32 (see :func:`build_glims`).

    Returns region logits ``(N, out, D, H, W)`` in eval mode, and in training mode (with
    ``deep_supervision``) the list ``[full, 1/2, 1/4, 1/8]``.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 3,
        width: int = 24,
        img_size: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 6, 2),
        num_heads: Sequence[int] = (6, 12, 24),
        window: int = 7,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        csab_kernel: int = 1,
        deep_supervision: bool = True,
    ):
        super().__init__()
        size = _triple(img_size, "img_size")
        if any(s <= 0 or s % INPUT_MULTIPLE for s in size):
            raise TumorSegError(f"glims: img_size must be positive multiples of {INPUT_MULTIPLE}, got {size}")
        if len(depths) != 3 or len(num_heads) != 3:
            raise TumorSegError("glims: depths and num_heads need 3 values (level 4, level 5, bottleneck)")
        f = int(width)
        dims = (8 * f, 16 * f, 32 * f)
        for dim, h in zip(dims, num_heads):
            if h <= 0 or dim % h:
                raise TumorSegError(f"glims: {dim} channels cannot be split into {h} heads (change width or num_heads)")
        grids = [tuple(s // k for s in size) for k in (8, 16, 32)]
        self.deep_supervision = deep_supervision
        self.img_size = size
        swin = dict(window=window, mlp_ratio=mlp_ratio, drop_path=drop_path)

        self.stem = ConvNormAct(in_channels, f)
        self.enc1, self.enc2, self.enc3, self.enc4 = (DMSF(f * 2**i) for i in range(4))
        self.swin3 = SwinStage(dims[0], grids[0], depths[0], num_heads[0], **swin)
        self.swin4 = SwinStage(dims[1], grids[1], depths[1], num_heads[1], merge=True, **swin)
        self.bottleneck = SwinStage(dims[2], grids[2], depths[2], num_heads[2], **swin)
        self.swin4_up = SwinUpStage(dims[1], grids[1], depths[1], num_heads[1], **swin)
        self.swin3_up = SwinStage(dims[0], grids[0], depths[0], num_heads[0], **swin)
        self.dec4, self.dec3, self.dec2, self.dec1 = (DMSU(f * 2**i) for i in (3, 2, 1, 0))
        self.csab = nn.ModuleList(CSAB(f * 2**i, spatial_kernel=csab_kernel) for i in range(5))
        self.heads = nn.ModuleList(nn.Conv3d(f * 2**i, out_channels, 1) for i in range(4))

    def forward(self, x: torch.Tensor):
        x = self.stem(x)
        x, s1 = self.enc1(x)
        x, s2 = self.enc2(x)
        x, s3 = self.enc3(x)
        x = self.swin3(x)
        x, s4 = self.enc4(x)
        x, s5 = self.swin4(x)
        s1, s2, s3, s4, s5 = (att(s) for att, s in zip(self.csab, (s1, s2, s3, s4, s5)))
        x = self.bottleneck(x)
        x = self.swin4_up(x, s5)
        u4 = self.dec4(x, s4)
        u3 = self.dec3(self.swin3_up(u4), s3)
        u2 = self.dec2(u3, s2)
        u1 = self.dec1(u2, s1)
        full = self.heads[0](u1)
        if self.training and self.deep_supervision:
            return [full] + [head(u) for head, u in zip(self.heads[1:], (u2, u3, u4))]
        return full


PRESET = TrainingPreset(
    # Paper Eq. 2 + code: MONAI DiceCELoss(sigmoid=True, squared_pred=True) on the three
    # region channels, i.e. squared-denominator Dice + BCE-with-logits, equal weights.
    loss="dice_ce",
    loss_params={
        "sigmoid": True,
        "squared_pred": True,
        "smooth_nr": 1e-6,
        "smooth_dr": 0.0,
        "include_background": True,
        "lambda_dice": 1.0,
        "lambda_ce": 1.0,
    },
    optimizer="adamw",
    lr=1e-3,
    weight_decay=1e-5,
    scheduler="cosine",  # CosineAnnealingLR over the epochs, no warm-up (code: cosine_anneal)
    scheduler_params={"T_max": 1000},
    batch_size=2,
    epochs=1000,
    amp=True,  # paper silent; the authors' code warns of NaNs under AMP, so keep a GradScaler
    grad_clip=None,
    # Eq. 3; the code also divides the sum by 1.875, a constant scale.
    deep_supervision_weights=[1.0, 0.5, 0.25, 0.125],
)

DEFAULT_CONFIG = {
    "width": 24,
    "img_size": [96, 96, 96],
    "depths": [2, 6, 2],
    "num_heads": [6, 12, 24],
    "window": 7,
    "mlp_ratio": 4.0,
    "drop_path": 0.0,
    "csab_kernel": 1,
    "deep_supervision": True,
}


@register_model(
    ModelInfo(
        name="glims",
        paper="004_7c917fb90c9fb124.txt",
        description=(
            "GLIMS 3D hybrid: DACB/DMSF encoder, Swin stages (2/6/2, window 7) at 1/8, 1/16 and "
            "the 1/32 bottleneck (768 ch), CSAB on every skip, DMSU decoder, deep supervision at "
            "1, 1/2, 1/4, 1/8 (list in train mode, full-res tensor in eval); sigmoid region "
            "outputs WT, TC, ET; whole volumes via sliding window (overlap 0.8). 47.16M params."
        ),
        dims=3,
        output="regions",
        input_multiple=INPUT_MULTIPLE,
        input_size=(96, 96, 96),
        in_channels=4,
        out_channels=3,
        class_names=list(REGION_NAMES),
        preset=PRESET,
        default_config=dict(DEFAULT_CONFIG),
        tiny_config={"width": 4, "img_size": [32, 32, 32], "num_heads": [2, 4, 8]},
        pretrained="",
    )
)
def build_glims(
    in_channels: int = 4,
    out_channels: int = 3,
    pretrained: str | None = None,
    embed_dim: int | None = None,
    **config,
) -> nn.Module:
    """GLIMS wrapped to take any spatial size (zero-pads to a multiple of 32, crops back).

    ``width`` is the stem width f (paper 24); ``embed_dim`` is the bottleneck width, 32 f
    (paper 768), and may be given instead of ``width``.
    """
    if pretrained:
        raise TumorSegError("glims is trained from scratch in its paper; load a trained checkpoint instead")
    if embed_dim is not None:
        if embed_dim <= 0 or embed_dim % 32:
            raise TumorSegError(f"glims: embed_dim must be a positive multiple of 32, got {embed_dim}")
        config["width"] = embed_dim // 32
    unknown = set(config) - set(DEFAULT_CONFIG)
    if unknown:
        raise TumorSegError(f"glims: unknown option(s) {', '.join(sorted(unknown))}")
    net = GLIMSNet(in_channels=in_channels, out_channels=out_channels, **config)
    return AnySizeSegmenter(net, INPUT_MULTIPLE)
