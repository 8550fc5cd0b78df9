"""U-Net of seeds 000 (LinTUNet paper, its baseline) and 003 (Liotta, FLAIR segmentation).

Four down blocks (``width`` x 1, 2, 4, 8 features; 64 -> 512 by default), a bottleneck of
``width * 16`` (1024) features, four transposed-convolution up blocks that concatenate the
encoder skip, and a 1x1 head returning logits (the trainer applies the sigmoid inside
``BCEWithLogits`` / the Dice term; inference applies it explicitly).

The double convolution follows the public notebook of seed 000:
conv3x3 -> ReLU -> conv3x3 -> ReLU -> BatchNorm. The paper text also lists dropout in the
encoder, but the notebook defines ``Dropout2d(0.3)`` and never applies it, so ``dropout``
defaults to 0 (set it to 0.3 to follow the text).

Any input size works: the input is zero-padded at the far end to a multiple of 16 and
the logits are cropped back, so the output has the input's spatial shape.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models.common import InstanceNorm2d, crop_to, pad_to_multiple
from napari_tumorseg.models.registry import ModelInfo, Recipe, TrainingPreset, register_model

DEPTH = 4  # down blocks; the bottleneck sits at 1 / 2**DEPTH resolution
MULTIPLE = 2**DEPTH


class DoubleConv(nn.Module):
    """conv3x3 -> ReLU -> conv3x3 -> ReLU -> BatchNorm (-> Dropout2d).

    ``norm`` swaps the paper's BatchNorm for an affine InstanceNorm (``"instance"``, the CPU
    recipe's choice for single images, see CPU_RECIPE and :func:`norm_for_data`) or a
    GroupNorm of 4-channel groups (``"group"``)."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0, norm: str = "batch"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm = _norm_layer(norm, out_ch)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x), inplace=True)
        x = F.relu(self.conv2(x), inplace=True)
        return self.dropout(self.norm(x))


def norm_for_data(image) -> str:
    """What ``norm="auto"`` (the CPU recipe's) becomes for a training set whose first case is
    ``image`` (c, z, y, x): BatchNorm for slices of volumes, instance norm for single images.

    A batch of slices of a few volumes shares their acquisitions, so its statistics are
    stable and keep the contrast between a lesion and the rest of the volume; a batch of 8
    photos from 8 scanners (Roboflow JPGs) does not, and there instance norm, which sees one
    image at a time, learns steadily. Measured with the CPU recipe (benchmarks/RESULTS_cpu_recipe.md):
    LGG's unseen patient 0.76 BatchNorm / 0.65 GroupNorm / 0.40 instance norm (2 minutes,
    8-bit window); coco_ravirawal 0.54 instance / 0.47 BatchNorm (5 minutes)."""
    depth = int(np.shape(image)[1]) if np.ndim(image) == 4 else 1
    return "batch" if depth > 1 else "instance"


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return InstanceNorm2d(channels)
    if norm == "group":  # groups of 4 channels (Wu & He 2018 use 16-32 groups at width 64)
        return nn.GroupNorm(max(1, channels // 4), channels)
    raise TumorSegError(f"unet norm must be 'batch', 'instance' or 'group', not {norm!r}")


class Down(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0, norm: str = "batch"):
        super().__init__()
        self.conv = DoubleConv(in_ch, out_ch, dropout, norm)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.conv(x)
        return skip, self.pool(skip)


class Up(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, norm: str = "batch"):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv = DoubleConv(2 * out_ch, out_ch, norm=norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """2D U-Net returning logits of shape (B, out_channels, H, W) for any H, W.

    ``bottleneck_attention`` (used by LinTUNet) is applied to the pooled 1/16 map of
    ``8 * width`` channels before the bottleneck convolutions; it receives and returns a
    (B, C, h, w) tensor.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 64,
        dropout: float = 0.0,
        bottleneck_attention: nn.Module | None = None,
        norm: str = "batch",
    ):
        super().__init__()
        if in_channels < 1 or out_channels < 1 or width < 1:
            raise TumorSegError(
                f"unet needs positive in/out channels and width, got {in_channels}/{out_channels}/{width}"
            )
        feats = [width * 2**i for i in range(DEPTH + 1)]  # 64, 128, 256, 512, 1024
        self.downs = nn.ModuleList()
        prev = in_channels
        for f in feats[:-1]:
            self.downs.append(Down(prev, f, dropout, norm))
            prev = f
        self.attention = bottleneck_attention
        self.bottleneck = DoubleConv(feats[-2], feats[-1], dropout, norm)
        self.ups = nn.ModuleList(Up(feats[i + 1], feats[i], norm) for i in reversed(range(DEPTH)))
        self.head = nn.Conv2d(feats[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, spatial = pad_to_multiple(x, MULTIPLE)
        skips = []
        for down in self.downs:
            skip, x = down(x)
            skips.append(skip)
        if self.attention is not None:
            x = self.attention(x)
        x = self.bottleneck(x)
        for up, skip in zip(self.ups, reversed(skips)):
            x = up(x, skip)
        return crop_to(self.head(x), spatial)


def build_checked(name: str, cls: type[nn.Module], in_channels: int, out_channels: int,
                  pretrained: str | None, config: dict) -> nn.Module:
    """Build ``cls`` refusing unknown config keys with a one-line error, then load
    ``pretrained`` (our checkpoint or a raw state dict) as initialisation if given."""
    # bottleneck_attention is LinTUNet's internal hook, not a user option.
    allowed = set(inspect.signature(cls).parameters) - {
        "in_channels", "out_channels", "bottleneck_attention"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise TumorSegError(f"{name}: unknown config {unknown}; allowed: {sorted(allowed)}")
    model = cls(in_channels, out_channels, **config)
    if pretrained:
        from napari_tumorseg.models.checkpoint import load_pretrained

        load_pretrained(model, pretrained)
    return model


# Seed 000 (paper text + its public notebook): BCEWithLogits, Adam lr 1e-3, StepLR(step 10,
# gamma 0.1) stepped per epoch, 40 epochs, batch 32, AMP + GradScaler, clip_grad_norm 1.0.
SEED000_PRESET = dict(
    loss="bce",
    optimizer="adam",
    lr=1e-3,
    scheduler="step",
    scheduler_params={"step_size": 10, "gamma": 0.1},
    batch_size=32,
    epochs=40,
    amp=True,
    grad_clip=1.0,
)

# Seed 003 trains the same U-Net with Adam lr 1e-4 and either Dice loss (~20 epochs) or
# Combo loss alpha*BCE + (1-alpha)*Dice with alpha 0.7 (~20 epochs) or 0.5 (~40 epochs).
# Kept as documented alternatives; the trainer runs the seed-000 recipe unless asked.
SEED003_VARIANTS = [
    {"name": "combo_0.7", "loss": "combo", "loss_params": {"alpha": 0.7}, "optimizer": "adam",
     "lr": 1e-4, "epochs": 20, "paper": "003_dc64672ffeaa87f7.txt"},
    {"name": "combo_0.5", "loss": "combo", "loss_params": {"alpha": 0.5}, "optimizer": "adam",
     "lr": 1e-4, "epochs": 40, "paper": "003_dc64672ffeaa87f7.txt"},
    {"name": "dice", "loss": "dice", "loss_params": {}, "optimizer": "adam",
     "lr": 1e-4, "epochs": 20, "paper": "003_dc64672ffeaa87f7.txt"},
]

# The CPU recipe: the paper's width (64) at 256 px with batch 32 takes about a minute a
# step on a 2-core CPU and learned nothing in 8 epochs. Chosen from runs on LGG (patient
# split) and coco_ravirawal (train -> valid) on this machine, one torch thread:
# width 16 at 128 px is 0.4 s a step of 8 (width 32: 2.4 s; 160 px: 1.0 s; width 24 learned
# less per minute on COCO), so an LGG epoch takes seconds and a COCO epoch ~30 s. Instance
# norm for single images (nnU-Net's choice too): with BatchNorm the COCO validation Dice
# swung between 0.28 and 0.44 from epoch to epoch (batch statistics of 8 JPGs from different
# scanners), with instance norm it climbed steadily to 0.58 in 20 min; Adam 1e-3 beat 3e-3
# there (0.54 vs 0.51 at 5 min). The paper's BatchNorm for slices of volumes: on LGG's
# unseen patient instance norm peaked at 0.38-0.40, BatchNorm at 0.73-0.76 (GroupNorm
# 0.57-0.65); on BraTS (other years) BatchNorm 0.78 vs instance 0.78. norm_for_data picks.
# BCE + Dice reached a useful Dice sooner than BCE alone; a constant lr, because a run cut
# by a time limit does not know how many epochs it will get. Numbers:
# benchmarks/RESULTS_cpu_recipe.md.
CPU_RECIPE = Recipe(
    name="cpu",
    preset=TrainingPreset(loss="bce_dice", optimizer="adam", lr=1e-3, scheduler="none",
                          batch_size=8, epochs=200, amp=False, grad_clip=1.0),
    model_config={"width": 16, "norm": "auto"},  # resolved by the data: norm_for_data
    input_size=(128, 128),
    augmentation=1.0,
    max_minutes=10.0,
    note="CPU quick: width 16, BatchNorm for volumes / instance norm for single images, 128 px, batch 8, BCE + Dice, Adam 1e-3 constant, "
         "augmentation, 200 epochs or 10 min (measured on this 2-core CPU; see "
         "benchmarks/RESULTS_cpu_recipe.md)",
)


@register_model(
    ModelInfo(
        name="unet",
        paper="000_dcaa3c9462ad4a38.txt",
        description="U-Net (64-1024 features, BN, transposed-conv decoder); baseline of seeds 000/003",
        dims=2,
        output="binary",
        input_multiple=MULTIPLE,
        input_size=(256, 256),
        in_channels=1,
        out_channels=1,
        class_names=["background", "tumour"],
        preset=TrainingPreset(
            **{**SEED000_PRESET, "loss_params": {"variants": SEED003_VARIANTS}}
        ),
        default_config={"width": 64, "dropout": 0.0},
        tiny_config={"width": 4},
        pretrained="",
        cpu_recipe=CPU_RECIPE,
    )
)
def build_unet(in_channels: int, out_channels: int, pretrained: str | None = None,
               **config) -> UNet:
    return build_checked("unet", UNet, in_channels, out_channels, pretrained, config)
