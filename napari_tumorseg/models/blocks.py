"""Attention and residual building blocks shared by the 2D segmenters.

* :class:`SEBlock` — squeeze-and-excitation (Hu et al. 2018), as seed 001 writes it:
  ``s = sigmoid(W2 ReLU(W1 GAP(X)))``, ``X' = X * s``, reduction 16.
* :class:`CBAM` — convolutional block attention module (Woo et al. 2018): channel
  attention from a shared MLP over average- and max-pooled descriptors, then spatial
  attention from a 7x7 conv over the channel-wise mean and max maps.
* :class:`AttentionGate` — additive attention gate (Oktay et al. 2018), seed 001's
  description: 1x1 convs on gating signal and skip, added, ReLU, 1x1 conv, sigmoid,
  ``Y = X * psi``.
* :class:`EfficientAttention` — Shen et al. 2021, "Efficient attention: attention with
  linear complexities": ``E = rho_q(Q) (rho_k(K)^T V)``; the context ``K^T V`` is
  ``d_k x d_v`` per head, so memory and time grow linearly with the number of tokens.
* :class:`ResNeXtBlock` — aggregated residual transform (Xie et al. 2017): 1x1 reduce,
  grouped 3x3, 1x1 expand, residual shortcut, ReLU.

Also two helpers for loading pretrained weights from local files only (no network):
:func:`load_state_dict_file` and :func:`adapt_input_conv`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_tumorseg.errors import TumorSegError, first_line


def _hidden(channels: int, reduction: int) -> int:
    # Tiny test widths would give 0 hidden units; one is the smallest working MLP.
    return max(channels // reduction, 1)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: channel re-weighting from global average pooling."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = _hidden(channels, reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s), inplace=True)))
        return x * s


class ChannelAttention(nn.Module):
    """CBAM's channel branch: shared MLP on avg- and max-pooled vectors, summed."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = _hidden(channels, reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(a)


class SpatialAttention(nn.Module):
    """CBAM's spatial branch: 7x7 conv over [mean_c(x), max_c(x)]."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(desc))


class CBAM(nn.Module):
    """Channel attention then spatial attention, applied in sequence (Woo et al.)."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)


class AttentionGate(nn.Module):
    """Additive attention gate: ``psi = sigmoid(W_psi ReLU(W_x x + W_g g))``, out ``x * psi``.

    ``g`` (the decoder's gating signal) is resized to ``x``'s grid when they differ, so
    the gate works whether the decoder upsamples before or after gating.
    """

    def __init__(self, x_channels: int, g_channels: int, inter_channels: int | None = None):
        super().__init__()
        inter = inter_channels or max(x_channels // 2, 1)
        self.theta_x = nn.Conv2d(x_channels, inter, 1, bias=False)
        self.phi_g = nn.Conv2d(g_channels, inter, 1)
        self.psi = nn.Conv2d(inter, 1, 1)

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The attention map psi in [0, 1], shape (N, 1, H, W) of ``x``."""
        phi = self.phi_g(g)
        if phi.shape[2:] != x.shape[2:]:
            phi = F.interpolate(phi, size=x.shape[2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.psi(F.relu(self.theta_x(x) + phi)))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.coefficients(x, g)


class EfficientAttention(nn.Module):
    """Efficient attention (Shen et al. 2021) over the pixels of a 2D map, with a residual.

    Per head: queries are softmax-normalised over their features, keys over positions,
    and ``context = K^T V`` (``d_k x d_v``) is formed before it meets the queries. The
    n x n attention matrix of dot-product attention is never built.

    ``normalization="scaling"`` uses ``rho(Y) = Y / sqrt(n)`` instead of softmax; in that
    form the module is exactly dot-product attention with scaling normalisation
    (the paper's equivalence), which the tests check.
    """

    def __init__(
        self,
        channels: int,
        key_channels: int | None = None,
        value_channels: int | None = None,
        heads: int = 1,
        normalization: str = "softmax",
    ):
        super().__init__()
        key_channels = key_channels or max(channels // 2, heads)
        value_channels = value_channels or channels
        if key_channels % heads or value_channels % heads:
            raise ValueError("key and value channels must be divisible by heads")
        if normalization not in ("softmax", "scaling"):
            raise ValueError(f"unknown normalization {normalization!r}")
        self.heads = heads
        self.normalization = normalization
        self.keys = nn.Conv2d(channels, key_channels, 1)
        self.queries = nn.Conv2d(channels, key_channels, 1)
        self.values = nn.Conv2d(channels, value_channels, 1)
        self.reprojection = nn.Conv2d(value_channels, channels, 1)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The aggregated values before reprojection, shape (N, d_v, H, W)."""
        n, _, h, w = x.shape
        tokens = h * w
        k = self.keys(x).reshape(n, self.heads, -1, tokens)  # (N, heads, dk, n)
        q = self.queries(x).reshape(n, self.heads, -1, tokens)
        v = self.values(x).reshape(n, self.heads, -1, tokens)  # (N, heads, dv, n)
        if self.normalization == "softmax":
            k = k.softmax(dim=-1)  # over positions
            q = q.softmax(dim=-2)  # over features
        else:
            k = k / math.sqrt(tokens)
            q = q / math.sqrt(tokens)
        context = k @ v.transpose(-1, -2)  # (N, heads, dk, dv): size independent of n
        out = context.transpose(-1, -2) @ q  # (N, heads, dv, n)
        return out.reshape(n, -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.reprojection(self.attend(x))


class ResNeXtBlock(nn.Module):
    """1x1 reduce -> grouped 3x3 -> 1x1 expand (BN after each), residual, ReLU.

    ``cardinality`` is the number of groups of the 3x3 conv; it is lowered to the largest
    divisor of the bottleneck width so narrow test variants stay valid.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        cardinality: int = 32,
        bottleneck_ratio: float = 0.5,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        mid = max(int(out_channels * bottleneck_ratio), 1)
        groups = math.gcd(mid, cardinality)
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)
        )
        self.grouped = nn.Sequential(
            nn.Conv2d(mid, mid, 3, padding=1, groups=groups, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
        )
        self.expand = nn.Sequential(nn.Conv2d(mid, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        if in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.expand(self.grouped(self.reduce(x))) + self.shortcut(x))


# --- pretrained weights from local files -------------------------------------------


def load_state_dict_file(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """Read a state dict from a local ``.pt/.pth/.bin`` (torch) or ``.safetensors`` file.

    A checkpoint wrapping the weights under ``state_dict``/``model`` is unwrapped and a
    DataParallel ``module.`` prefix removed. Never touches the network; every failure is
    a one-line :class:`TumorSegError` naming ``what`` was expected.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise TumorSegError(f"pretrained weights for {what} not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(p), device="cpu")
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable/corrupt file is a user error here
        raise TumorSegError(f"cannot read pretrained weights {p.name} for {what}: {first_line(err)}") from None
    for key in ("state_dict", "model", "model_state_dict", "weights"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise TumorSegError(f"{p.name} is not a state dict of tensors (expected {what})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Turn an RGB first-conv kernel (out, 3, kh, kw) into one for ``in_channels`` inputs.

    Every new channel gets the sum of the RGB kernels divided by ``in_channels``. So an
    image whose channels are all equal gives exactly the response the RGB network gives to
    that grey image replicated to RGB: 1 channel is MRI stored as grey, and 4 MRI
    modalities have no relation to R, G or B that would favour copying one colour.
    """
    src = weight.shape[1]
    if src == in_channels:
        return weight
    if src != 3:
        raise TumorSegError(
            f"cannot adapt a {src}-channel input layer to {in_channels} channels (only RGB weights adapt)"
        )
    grey = weight.sum(dim=1, keepdim=True) / in_channels
    return grey.repeat(1, in_channels, 1, 1)
