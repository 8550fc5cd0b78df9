"""Hybrid U-Net with a transformer bottleneck and efficient attention (seed 001, Ali et al.).

What the paper fixes, and how it is built here:

* Encoder: ResNet-50 (ImageNet weights in the paper). At its 512x512x3 input the paper
  takes four stages: 256x256x64 (stem conv), 128x128x256 (layer1), 64x64x512 (layer2)
  and 32x32x1024 (layer3). So the deepest map is ResNet-50's *layer3* at stride 16;
  layer4 (2048 channels, stride 32) is not part of the model. Each stage is followed by
  SE and CBAM, in line (their output feeds the next stage and the skip).
* Bottleneck: the 32x32x1024 map becomes 1024 tokens of width 1024, through four
  transformer blocks (8 heads, FFN 1024, dropout 0.1, layer norm, residuals; post-norm
  as in Vaswani et al., which the paper cites). The paper names no positional encoding,
  so none is added: tokens come from zero-padded convolutions, which carry position,
  and without a fixed table the model takes any input size.
* Decoder: four transposed-conv up steps back to full resolution. At each, the skip is
  refined by CBAM, then gated by an additive attention gate driven by the upsampled
  decoder map (``X * psi``), concatenated and fused by a 3x3 conv; then efficient
  attention (Shen et al., linear in tokens), a ResNeXt block and an SE block.
* Head: 1x1 conv to logits; the paper's sigmoid is applied at inference (output kind
  "binary"), so training uses the numerically safer BCE-with-logits.

Decoder widths are not given in the paper; (256, 128, 64, 32) follows the
segmentation_models U-Net the paper builds on (its last four decoder stages double
that, we keep the 1/16 start). ``width`` scales them; ``encoder_base`` (64 = ResNet-50)
narrows the encoder for tests. Parameter names of the encoder trunk equal torchvision's
and timm's ``resnet50``, so their state dicts load directly via ``pretrained=PATH``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.models.resnet import Bottleneck

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
from napari_tumorseg.models.common import crop_to, pad_to_multiple
from napari_tumorseg.models.registry import ModelInfo, TrainingPreset, register_model

RESNET50_BLOCKS = (3, 4, 6)  # layer1..layer3 of ResNet-50; layer4 is not used (see above)


class ResNetTrunk(nn.Module):
    """ResNet-50 up to layer3, torchvision names; ``base`` 64 is the real network."""

    def __init__(self, in_channels: int = 3, base: int = 64, blocks: Sequence[int] = RESNET50_BLOCKS):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, base, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._inplanes = base
        self.layer1 = self._make_layer(base, blocks[0], stride=1)
        self.layer2 = self._make_layer(base * 2, blocks[1], stride=2)
        self.layer3 = self._make_layer(base * 4, blocks[2], stride=2)
        self.channels = (base, base * 4, base * 8, base * 16)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        out = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self._inplanes != out:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )
        layers = [Bottleneck(self._inplanes, planes, stride, downsample)]
        self._inplanes = out
        layers += [Bottleneck(out, planes) for _ in range(1, n)]
        return nn.Sequential(*layers)


class TransformerBottleneck(nn.Module):
    """Tokens of the deepest map through ``depth`` standard transformer encoder blocks."""

    def __init__(
        self, channels: int, dim: int, depth: int = 4, heads: int = 8, ffn: int = 1024, dropout: float = 0.1
    ):
        super().__init__()
        self.proj_in = nn.Conv2d(channels, dim, 1) if dim != channels else nn.Identity()
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim, heads, dim_feedforward=ffn, dropout=dropout, activation="relu", batch_first=True
            )
            for _ in range(depth)
        )
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(x)
        n, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        for blk in self.blocks:
            t = blk(t)
        return t.transpose(1, 2).reshape(n, c, h, w)


def _conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class DecoderBlock(nn.Module):
    """Up x2, CBAM-refined and gated skip, fuse, efficient attention, ResNeXt, SE."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, cardinality: int, attention_heads: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )
        self.skip_cbam = CBAM(skip_ch) if skip_ch else None
        self.gate = AttentionGate(skip_ch, out_ch) if skip_ch else None
        self.fuse = _conv_bn_relu(out_ch + skip_ch, out_ch)
        key_ch = max(out_ch // 2, attention_heads)
        key_ch -= key_ch % attention_heads
        self.attention = EfficientAttention(out_ch, key_channels=key_ch, heads=attention_heads)
        self.resnext = ResNeXtBlock(out_ch, out_ch, cardinality=cardinality)
        self.se = SEBlock(out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            s = self.gate(self.skip_cbam(skip), x)
            x = torch.cat([x, s], dim=1)
        x = self.fuse(x)
        x = self.attention(x)
        x = self.resnext(x)
        return self.se(x)


class HybridUNet(nn.Module):
    """Seed 001's hybrid U-Net; takes any H, W (pads to 16 and crops back); returns logits."""

    multiple = 16

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        width: float = 1.0,
        encoder_base: int = 64,
        encoder_blocks: Sequence[int] = RESNET50_BLOCKS,
        transformer_dim: int | None = None,
        transformer_depth: int = 4,
        transformer_heads: int = 8,
        transformer_ffn: int = 1024,
        transformer_dropout: float = 0.1,
        decoder_channels: Sequence[int] = (256, 128, 64, 32),
        cardinality: int = 32,
        attention_heads: int = 1,
    ):
        super().__init__()
        if len(encoder_blocks) != 3:
            raise TumorSegError("encoder_blocks needs 3 numbers (ResNet-50: 3, 4, 6)")
        self.backbone = ResNetTrunk(in_channels, encoder_base, encoder_blocks)
        chans = self.backbone.channels
        self.stage_se = nn.ModuleList(SEBlock(c) for c in chans)
        self.stage_cbam = nn.ModuleList(CBAM(c) for c in chans)
        dim = transformer_dim or chans[-1]
        self.bottleneck = TransformerBottleneck(
            chans[-1], dim, transformer_depth, transformer_heads, transformer_ffn, transformer_dropout
        )
        dec = [max(int(round(c * width)), 2) for c in decoder_channels]
        skips = (chans[2], chans[1], chans[0], 0)  # 1/8, 1/4, 1/2, full resolution (none)
        ins = [dim] + dec[:-1]
        self.decoder = nn.ModuleList(
            DecoderBlock(i, s, o, cardinality, attention_heads) for i, s, o in zip(ins, skips, dec)
        )
        self.head = nn.Conv2d(dec[-1], out_channels, 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = self.backbone
        feats = []
        x = b.relu(b.bn1(b.conv1(x)))
        for i, layer in enumerate((None, b.layer1, b.layer2, b.layer3)):
            if layer is not None:
                x = layer(b.maxpool(x) if i == 1 else x)
            x = self.stage_cbam[i](self.stage_se[i](x))
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, spatial = pad_to_multiple(x, self.multiple)
        s1, s2, s3, s4 = self.encode(x)
        y = self.bottleneck(s4)
        for block, skip in zip(self.decoder, (s3, s2, s1, None)):
            y = block(y, skip)
        return crop_to(self.head(y), spatial)


def load_resnet50_weights(model: HybridUNet, path: str) -> None:
    """Load a torchvision/timm ``resnet50`` state dict file into the encoder trunk.

    layer4/fc entries are ignored (the paper's encoder stops at layer3). 3-channel input
    weights are adapted for 1 or 4 input channels (see :func:`adapt_input_conv`). Any
    missing or mis-shaped trunk weight is a one-line :class:`TumorSegError`.
    """
    what = "hybrid_unet (a torchvision/timm resnet50 state dict)"
    sd = load_state_dict_file(path, what)
    prefix = next((p for p in ("", "encoder.", "backbone.", "model.") if p + "conv1.weight" in sd), None)
    if prefix is None:
        raise TumorSegError(f"{path} does not look like a ResNet-50 state dict (no conv1.weight)")
    target = model.backbone.state_dict()
    new = {}
    missing = []
    for key, ref in target.items():
        src = sd.get(prefix + key)
        if src is None:
            missing.append(key)
            continue
        if key == "conv1.weight" and src.ndim == 4 and src.shape[1] != ref.shape[1]:
            src = adapt_input_conv(src, ref.shape[1])
        if src.shape != ref.shape:
            raise TumorSegError(
                f"{path}: {key} has shape {tuple(src.shape)}, the encoder needs {tuple(ref.shape)}"
                " (ResNet-50 weights need encoder_base=64)"
            )
        new[key] = src.to(ref.dtype)
    if missing:
        raise TumorSegError(
            f"{path} lacks {len(missing)} ResNet-50 encoder weights (first: {missing[0]})"
        )
    model.backbone.load_state_dict(new)


@register_model(
    ModelInfo(
        name="hybrid_unet",
        paper="001_871864c2920da804.txt",
        description=(
            "ResNet-50 (to layer3) U-Net, SE+CBAM per encoder stage, 4-block transformer "
            "bottleneck on the 1/16 map (1024 tokens x 1024 at 512^2), decoder with CBAM-refined "
            "gated skips, efficient attention, ResNeXt and SE blocks; sigmoid at inference. "
            "Preset: paper gives BCE + lambda*Dice (lambda not stated: 1.0), batch 8, 29 epochs, "
            "ImageNet-initialised encoder; optimiser/lr/schedule not stated (Adam 1e-4, constant, "
            "as the segmentation_models library it uses). Augmentation: flips, rotations, "
            "Gaussian blur, contrast shift."
        ),
        dims=2,
        output="binary",
        input_multiple=16,
        input_size=(512, 512),
        in_channels=3,
        out_channels=1,
        class_names=["tumour"],
        preset=TrainingPreset(
            loss="bce_dice",
            loss_params={"lambda": 1.0, "note": "lambda is tuned in the paper but its value is not stated"},
            optimizer="adam",
            lr=1e-4,
            scheduler="none",
            batch_size=8,
            epochs=29,
            amp=False,
            grad_clip=None,
        ),
        default_config={"width": 1.0, "encoder_base": 64},
        tiny_config={
            "width": 0.125,
            "encoder_base": 8,
            "encoder_blocks": (1, 1, 1),
            "transformer_depth": 1,
            "transformer_ffn": 32,
        },
        pretrained="torchvision or timm resnet50 ImageNet state dict file (.pth/.pt/.safetensors)",
    )
)
def build_hybrid_unet(
    in_channels: int = 3, out_channels: int = 1, pretrained: str | None = None, **config
) -> HybridUNet:
    """Build seed 001's hybrid U-Net; ``pretrained`` is a local ResNet-50 state dict file."""
    if in_channels < 1 or out_channels < 1:
        raise TumorSegError("in_channels and out_channels must be >= 1")
    try:
        model = HybridUNet(in_channels, out_channels, **config)
    except TypeError as err:
        raise TumorSegError(f"hybrid_unet: bad config ({err})") from None
    if pretrained:
        load_resnet50_weights(model, pretrained)
    return model
