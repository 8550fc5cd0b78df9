"""Data augmentation on image and mask together (seed 001: flips, rotations, Gaussian
blur, contrast shift), for 2D (c, y, x) and 3D (c, z, y, x) tensors.

Every random draw comes from the ``torch.Generator`` passed in. The engine seeds it from
(run seed, epoch, sample position), so a sample's augmentation does not depend on the
worker that loads it or on where a run was cancelled and resumed.

Geometric transforms move image and target together (nearest neighbour for the target);
intensity transforms touch the image only. ``strength`` (0-2, default 1) scales the
probabilities and magnitudes; 0 switches augmentation off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF


@dataclass
class AugmentConfig:
    enabled: bool = True
    strength: float = 1.0
    flips: bool = True
    rotate: bool = True  # 90-degree turns in-plane, plus up to 15 deg * strength for 2D
    blur: bool = True
    contrast: bool = True

    @classmethod
    def from_value(cls, value) -> "AugmentConfig":
        """From a bool, a strength number, a dict of fields, or an AugmentConfig."""
        if isinstance(value, cls):
            return value
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(enabled=False)
        if isinstance(value, (int, float)):
            return cls(enabled=value > 0, strength=float(value))
        return cls(**dict(value))


def _u(gen: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _rotate_small(image: torch.Tensor, target: torch.Tensor, angle_deg: float):
    """Rotate (c, y, x) image (bilinear) and target (nearest) about the centre."""
    a = math.radians(angle_deg)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                         dtype=torch.float32)[None]
    grid = F.affine_grid(theta, (1, 1, *image.shape[-2:]), align_corners=False)
    img = F.grid_sample(image[None].float(), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)[0]
    t = target if target.ndim == image.ndim else target[None]
    tt = F.grid_sample(t[None].float(), grid, mode="nearest", padding_mode="zeros",
                       align_corners=False)[0].to(target.dtype)
    return img.to(image.dtype), (tt if target.ndim == image.ndim else tt[0])


def augment(image: torch.Tensor, target: torch.Tensor, gen: torch.Generator,
            cfg: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment one sample. ``image`` (c, *sp); ``target`` (r, *sp) float or (*sp) long."""
    if not cfg.enabled or cfg.strength <= 0:
        return image, target
    s = float(cfg.strength)
    p = min(1.0, 0.5 * s)
    n_sp = image.ndim - 1
    t_off = target.ndim - n_sp  # 1 for channel-first targets, 0 for label maps
    if cfg.flips:
        for axis in range(n_sp):
            if _u(gen) < p:
                image = image.flip(1 + axis)
                target = target.flip(t_off + axis)
    if cfg.rotate:
        k = int(torch.randint(0, 4, (), generator=gen)) if _u(gen) < p else 0
        if k:
            image = torch.rot90(image, k, dims=(-2, -1))
            target = torch.rot90(target, k, dims=(-2, -1))
        if n_sp == 2 and _u(gen) < p:
            image, target = _rotate_small(image, target, _u(gen, -15.0, 15.0) * min(s, 2.0))
    if cfg.blur and _u(gen) < 0.2 * s:
        sigma = _u(gen, 0.5, 0.5 + 0.5 * s)
        k = 2 * math.ceil(2 * sigma) + 1
        flat = image.reshape(-1, *image.shape[-2:])[:, None].float()
        image = TF.gaussian_blur(flat, [k, k], [sigma, sigma])[:, 0].reshape(image.shape).to(image.dtype)
    if cfg.contrast and _u(gen) < p:
        factor = _u(gen, 1.0 - 0.25 * s, 1.0 + 0.25 * s)
        dims = tuple(range(1, image.ndim))
        mean = image.mean(dim=dims, keepdim=True)
        image = (image - mean) * factor + mean
    return image.contiguous(), target.contiguous()
