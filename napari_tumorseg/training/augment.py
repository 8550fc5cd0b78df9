"""Data augmentation on image and mask together (seed 001: flips, rotations, Gaussian
blur, contrast shift; issue 15: intensity scale, shift, gamma and a smooth bias field), for
2D (c, y, x) and 3D (c, z, y, x) tensors.

Every random draw comes from the ``torch.Generator`` passed in. The engine seeds it from
(run seed, epoch, sample position), so a sample's augmentation does not depend on the
worker that loads it or on where a run was cancelled and resumed.

Geometric transforms move image and target together (nearest neighbour for the target);
intensity transforms touch the image only. ``strength`` (0-2, default 1) scales the
probabilities and magnitudes; 0 switches augmentation off.

The intensity transforms (``intensity``, on by default) act inside the foreground only:
voxels where some channel differs from the background value the robust normalisation
writes (0, :data:`napari_tumorseg.intensity.BACKGROUND`), so the background stays exactly
background. Each one is applied to a sample with its probability (``*_p``) and draws its
parameter per channel from its range (``*_range``, widened about "no change" by
``strength``): a scale factor, a shift (in the normalised units, foreground standard
deviations), a gamma (on the channel's foreground min-max range, which it keeps), a
multiplicative bias field — ``exp`` of a random polynomial of degree 3 in the sample's
coordinates, scaled so its minimum and maximum lie within ``bias_range``, applied to the
intensity above the channel's foreground minimum, as a receive coil's shading would be
(in this order: gamma, bias field, the opt-in bright-rim field, scale, shift; the opt-in
GIN map before them). Before them, the lesion's own contrast
(``lesion_contrast_*``): the distance of the labelled lesion from the normal tissue's median
scaled per channel, tapered at its edge. They run after the geometric transforms and before
blur and contrast. Scanners and sources
differ in exactly these ways; the model learns to ignore them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.intensity import BACKGROUND

_FACTOR_RANGES = ("scale_range", "gamma_range", "bias_range", "lesion_contrast_range", "zoom_range")
_RANGES = _FACTOR_RANGES + ("shift_range", "periphery_range", "periphery_width")
_PROBS = ("scale_p", "shift_p", "gamma_p", "bias_p", "lesion_contrast_p", "gin_p", "periphery_p", "zoom_p")


@dataclass
class AugmentConfig:
    enabled: bool = True
    strength: float = 1.0
    flips: bool = True
    rotate: bool = True  # 90-degree turns in-plane, plus up to 15 deg * strength for 2D
    blur: bool = True
    contrast: bool = True
    intensity: bool = True  # scale, shift, gamma, bias field inside the foreground
    scale_p: float = 0.3
    scale_range: tuple[float, float] = (0.75, 1.25)
    shift_p: float = 0.3
    shift_range: tuple[float, float] = (-0.3, 0.3)
    gamma_p: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    bias_p: float = 0.3
    bias_range: tuple[float, float] = (0.7, 1.3)  # the field's values, min to max
    # The lesion's own contrast: its distance from the normal tissue's level is multiplied
    # by a factor from lesion_contrast_range (per channel, tapered over a few pixels at its
    # edge). Oedema is brighter on one scan than another (FLAIR z-score of the whole tumour
    # 1.8-1.9 in the two 2013 training cases; the oedema a 2013-only model missed in
    # BraTS2021_00002 sits at 0.84): scanner-wide changes above cannot teach that. Measured,
    # 8-minute 2013-only runs on the other years' whole tumour: 0.815-0.826 in three runs
    # with it, 0.779-0.800 in two without; LGG's unseen patient level (0.776 vs 0.770). A
    # training run on single images takes 0 unless its config names it (lesion_contrast_for_data).
    lesion_contrast_p: float = 0.5
    lesion_contrast_range: tuple[float, float] = (0.35, 1.1)
    # A random shallow network as the intensity map (GIN, Ouyang et al. 2022, "Causality-
    # inspired single-source domain generalization for medical image segmentation"): per
    # channel, ``gin_layers`` convolutions (kernel 1 or 3, random normal weights, leaky ReLU)
    # blended with the channel by a random weight and brought back to its foreground mean
    # and spread. Tissue contrasts change non-linearly, even invert, so a model trained on one
    # source must lean on shape and context more than on one scanner's grey levels.
    gin_p: float = 0.0
    gin_layers: int = 4
    # A receive coil array's shading: the brain's rim brighter than its centre (a field
    # 1 + a * w, w 1 at the brain's edge fading to 0 within ``periphery_width`` pixels
    # in-plane, a from ``periphery_range``). Cortex sits 0.5-0.8 normalised units above deep
    # white matter on FLAIR in the other years' raw scans and level with it in the 2013 set;
    # a 2013-only model trained long took that bright rim for oedema.
    periphery_p: float = 0.0
    periphery_range: tuple[float, float] = (0.1, 0.6)
    periphery_width: tuple[float, float] = (4.0, 14.0)
    # In-plane zoom about the centre (2D): a factor from zoom_range, > 1 enlarges (nnU-Net
    # and MONAI's RandZoom do the same); heads and fields of view differ between sources.
    zoom_p: float = 0.0
    zoom_range: tuple[float, float] = (0.85, 1.2)
    # Each present channel is blanked (zero, as a sequence the case lacks) with this
    # probability, one always kept: a model trained with missing_channels "zeros" learns
    # to segment from any subset of its sequences. A list gives one probability per channel
    # of the run (its `channels` order): sequences seen in few training cases can be blanked
    # more often, so the model leans on them less.
    channel_drop_p: float | tuple = 0.0

    def __post_init__(self) -> None:
        for name in _PROBS:
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise TumorSegError(f"augmentation {name} must be within 0-1, got {getattr(self, name)!r}")
            setattr(self, name, value)
        drop = self.channel_drop_p
        values = list(drop) if isinstance(drop, (list, tuple)) else [drop]
        try:
            values = [float(v) for v in values]
        except (TypeError, ValueError):
            raise TumorSegError(f"augmentation channel_drop_p must be numbers, got {drop!r}") from None
        if not values or not all(0.0 <= v <= 1.0 for v in values):
            raise TumorSegError(f"augmentation channel_drop_p must be within 0-1, got {drop!r}")
        self.channel_drop_p = tuple(values) if isinstance(drop, (list, tuple)) else values[0]
        if not isinstance(self.gin_layers, int) or isinstance(self.gin_layers, bool) or not 1 <= self.gin_layers <= 8:
            raise TumorSegError(f"augmentation gin_layers must be a whole number 1-8, got {self.gin_layers!r}")
        for name in _RANGES:
            value = getattr(self, name)
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise TumorSegError(f"augmentation {name} must be two numbers, got {value!r}") from None
            if not lo <= hi or (name in _FACTOR_RANGES and lo <= 0):
                raise TumorSegError(f"augmentation {name} must be low <= high"
                                    + (", both above 0" if name in _FACTOR_RANGES else "") + f", got {value!r}")
            setattr(self, name, (lo, hi))

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
        values = dict(value)
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TumorSegError(f"unknown augmentation option(s): {', '.join(unknown)}")
        return cls(**values)


def _u(gen: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _turn_and_zoom(image: torch.Tensor, target: torch.Tensor, angle_deg: float, zoom: float = 1.0):
    """Rotate (c, y, x) image (bilinear) and target (nearest) about the centre, and zoom by
    ``zoom`` (> 1 enlarges; the grid samples the input at output / zoom)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a) / zoom, math.sin(a) / zoom
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=torch.float32)[None]
    grid = F.affine_grid(theta, (1, 1, *image.shape[-2:]), align_corners=False)
    img = F.grid_sample(image[None].float(), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)[0]
    t = target if target.ndim == image.ndim else target[None]
    tt = F.grid_sample(t[None].float(), grid, mode="nearest", padding_mode="zeros",
                       align_corners=False)[0].to(target.dtype)
    return img.to(image.dtype), (tt if target.ndim == image.ndim else tt[0])


def _widened(lo: float, hi: float, s: float, identity: float) -> tuple[float, float]:
    """A range scaled by ``strength`` about the value that changes nothing."""
    lo, hi = identity + (lo - identity) * s, identity + (hi - identity) * s
    if identity == 1.0:  # factors stay positive
        lo, hi = max(lo, 0.05), max(hi, 0.05)
    return lo, hi


def _draw(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _coords(shape) -> list[torch.Tensor]:
    """Coordinates in [-1, 1] along each axis of ``shape``, broadcastable to it."""
    out = []
    for axis, n in enumerate(shape):
        view = [1] * len(shape)
        view[axis] = n
        out.append(torch.linspace(-1.0, 1.0, n).view(view) if n > 1 else torch.zeros(view))
    return out


def bias_field(shape, gen: torch.Generator, lo: float, hi: float, degree: int = 3) -> torch.Tensor:
    """A smooth multiplicative field over ``shape`` (2D or 3D) with values within [lo, hi]:
    ``exp`` of a polynomial of ``degree`` with random coefficients, rescaled so its log
    spans a random sub-interval of [log lo, log hi]."""
    xs = _coords(shape)
    poly = torch.zeros(tuple(shape))
    powers = [p for p in _monomials(len(shape), degree) if sum(p) > 0]
    coef = _draw(gen, len(powers), -1.0, 1.0)
    for c, p in zip(coef, powers):
        term = torch.ones(())
        for x, e in zip(xs, p):
            if e:
                term = term * x ** e
        poly = poly + c * term
    a, b = sorted(_draw(gen, 2, math.log(lo), math.log(hi)).tolist())
    span = float(poly.max() - poly.min())
    unit = (poly - poly.min()) / span if span > 0 else torch.zeros_like(poly)
    return torch.exp(a + (b - a) * unit)


def _monomials(dims: int, degree: int) -> list[tuple[int, ...]]:
    if dims == 0:
        return [()]
    return [(e,) + rest for e in range(degree + 1) for rest in _monomials(dims - 1, degree - e)]


def _intensity(image: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig, s: float) -> torch.Tensor:
    """Scale, shift, gamma and bias field inside the foreground (see the module doc)."""
    fg = (image != BACKGROUND).any(dim=0)
    c = image.shape[0]
    # The opt-in rim field draws only when asked for, so a run without it keeps the random
    # stream (and the augmentation) runs had before it existed.
    names = ("gamma", "bias", "periphery", "scale", "shift") if cfg.periphery_p > 0 else ("gamma", "bias", "scale", "shift")
    draws = {name: _u(gen) < min(1.0, getattr(cfg, f"{name}_p") * s) for name in names}
    draws.setdefault("periphery", False)
    if not fg.any() or not any(draws.values()):
        return image
    x = image.float().clone()
    per_ch = (c,) + (1,) * (image.ndim - 1)

    def fg_min_max(t: torch.Tensor):
        vals = t[:, fg]  # (c, n): each channel's foreground voxels
        return vals.min(dim=1).values.view(per_ch), vals.max(dim=1).values.view(per_ch)

    if draws["gamma"]:
        lo, hi = fg_min_max(x)
        g = _draw(gen, c, *_widened(*cfg.gamma_range, s, 1.0)).view(per_ch)
        span = (hi - lo).clamp_min(1e-6)
        x = lo + ((x - lo) / span).clamp(0.0, 1.0) ** g * span
    if draws["bias"]:
        lo, _ = fg_min_max(x)
        blo, bhi = _widened(*cfg.bias_range, s, 1.0)
        field = torch.stack([bias_field(image.shape[1:], gen, blo, bhi) for _ in range(c)])
        x = lo + (x - lo) * field
    if draws["periphery"]:
        lo, _ = fg_min_max(x)
        a = _draw(gen, c, *_widened(*cfg.periphery_range, s, 0.0)).view(per_ch)
        x = lo + (x - lo) * (1.0 + a * _rim_weight(fg, _u(gen, *cfg.periphery_width)))
    if draws["scale"]:
        x = x * _draw(gen, c, *_widened(*cfg.scale_range, s, 1.0)).view(per_ch)
    if draws["shift"]:
        x = x + _draw(gen, c, *_widened(*cfg.shift_range, s, 0.0)).view(per_ch)
    return torch.where(fg, x, image.float()).to(image.dtype)


def _gin(image: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig, s: float) -> torch.Tensor:
    """A random shallow network's output blended into each channel (see AugmentConfig)."""
    if _u(gen) >= min(1.0, cfg.gin_p * s):
        return image
    fg = (image != BACKGROUND).any(dim=0)
    if int(fg.sum()) < 2:
        return image
    x = image.float()
    out = x.clone()
    hidden = 2
    for c in range(x.shape[0]):
        ch = x[c]
        vals = ch[fg]
        mean, std = vals.mean(), vals.std().clamp_min(1e-6)
        z = (ch - mean) / std
        h = z.reshape(-1, 1, *ch.shape[-2:])  # slices as a batch
        c_in = 1
        for layer in range(cfg.gin_layers):
            last = layer == cfg.gin_layers - 1
            c_out = 1 if last else hidden
            k = 1 if _u(gen) < 0.5 else 3
            w = torch.randn(c_out, c_in, k, k, generator=gen)
            b = torch.randn(c_out, generator=gen)
            h = F.conv2d(h, w, b, padding=k // 2)
            if not last:
                h = F.leaky_relu(h, 0.01)
            c_in = c_out
        h = h.reshape(ch.shape)
        g = h[fg]
        h = (h - g.mean()) / g.std().clamp_min(1e-6)  # the original's foreground level and spread
        a = _u(gen)
        mixed = a * h + (1.0 - a) * z
        m = mixed[fg]
        mixed = (mixed - m.mean()) / m.std().clamp_min(1e-6) * std + mean
        out[c] = torch.where(fg, mixed, ch)
    return out.to(image.dtype)


def _blur_in_plane(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """(*, y, x) float tensor, every 2D plane Gaussian-blurred (kernel out to 2 sigma)."""
    k = 2 * math.ceil(2 * sigma) + 1
    flat = t.reshape(-1, 1, *t.shape[-2:]).float()
    return TF.gaussian_blur(flat, [k, k], [sigma, sigma]).reshape(t.shape)


def _rim_weight(fg: torch.Tensor, width: float) -> torch.Tensor:
    """(*sp) weight, 1 at the foreground's in-plane edge, fading to 0 about ``width`` pixels
    inside it (a blurred mask: cheap, and smooth where a distance map has ridges)."""
    blurred = _blur_in_plane(fg.float(), max(float(width) / 2.0, 0.5))
    return ((1.0 - blurred) * 2.0).clamp(0.0, 1.0) * fg


def lesion_contrast_for_data(image) -> float:
    """``lesion_contrast_p`` for a training set whose first case is ``image`` (c, z, y, x),
    chosen as the CPU recipe chooses its norm layer (``models.unet.norm_for_data``): 0.5 for
    slices of volumes, 0 for single images. Measured, 4-minute runs on coco_ravirawal (photos
    of many scanners, 8-bit window): best validation Dice 0.554 with it, 0.575 without; on
    volumes it helped (see AugmentConfig)."""
    depth = int(image.shape[1]) if getattr(image, "ndim", 0) == 4 else 1
    return 0.5 if depth > 1 else 0.0


def _lesion_weight(lesion: torch.Tensor) -> torch.Tensor:
    """The lesion mask (*sp), 1 inside and fading to 0 within ~4 pixels outside its edge
    (in-plane), so a contrast change has no step at the edge for the model to learn as one."""
    w = lesion.float().reshape(-1, 1, *lesion.shape[-2:])
    for _ in range(2):
        w = F.avg_pool2d(w, 5, stride=1, padding=2, count_include_pad=False)
    return torch.maximum(w.reshape(lesion.shape), lesion.float())


def _lesion_contrast(image: torch.Tensor, target: torch.Tensor, gen: torch.Generator,
                     cfg: AugmentConfig, s: float, t_off: int) -> torch.Tensor:
    """Scale each channel's lesion about the normal tissue's median (see AugmentConfig)."""
    if _u(gen) >= min(1.0, cfg.lesion_contrast_p * s):
        return image
    # a region a lesion-only mask leaves unknown is NaN: it marks nothing here
    lesion = torch.nan_to_num(target.float()).sum(dim=0) > 0 if t_off else target > 0
    fg = (image != BACKGROUND).any(dim=0)
    normal = fg & ~lesion
    if not lesion.any() or not normal.any():
        return image
    c = image.shape[0]
    per_ch = (c,) + (1,) * (image.ndim - 1)
    x = image.float()
    ref = x[:, normal].median(dim=1).values.view(per_ch)
    f = _draw(gen, c, *_widened(*cfg.lesion_contrast_range, s, 1.0)).view(per_ch)
    w = _lesion_weight(lesion)
    out = x + (f - 1.0) * w * (x - ref)
    return torch.where(fg, out, x).to(image.dtype)


def augment(image: torch.Tensor, target: torch.Tensor, gen: torch.Generator,
            cfg: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment one sample. ``image`` (c, *sp); ``target`` (r, *sp) float or (*sp) long."""
    if not cfg.enabled or cfg.strength <= 0:
        return image, target
    s = float(cfg.strength)
    p = min(1.0, 0.5 * s)
    n_sp = image.ndim - 1
    # A channel that is all zero is a sequence the case lacks: it stays zero (the
    # intensity changes below act inside the other channels' foreground).
    absent = (image == 0).reshape(image.shape[0], -1).all(dim=1) if image.shape[0] > 1 else None
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
            image, target = _turn_and_zoom(image, target, _u(gen, -15.0, 15.0) * min(s, 2.0))
    if cfg.zoom_p > 0 and n_sp == 2 and _u(gen) < min(1.0, cfg.zoom_p * s):  # drawn only when asked for
        image, target = _turn_and_zoom(image, target, 0.0, _u(gen, *_widened(*cfg.zoom_range, s, 1.0)))
    if cfg.intensity:
        if cfg.lesion_contrast_p > 0:  # before the scanner-wide changes: a tissue property
            image = _lesion_contrast(image, target, gen, cfg, s, t_off)
        if cfg.gin_p > 0:
            image = _gin(image, gen, cfg, s)
        image = _intensity(image, gen, cfg, s)
    if cfg.blur and _u(gen) < 0.2 * s:
        sigma = _u(gen, 0.5, 0.5 + 0.5 * s)
        image = _blur_in_plane(image, sigma).to(image.dtype)
    if cfg.contrast and _u(gen) < p:
        factor = _u(gen, 1.0 - 0.25 * s, 1.0 + 0.25 * s)
        dims = tuple(range(1, image.ndim))
        mean = image.mean(dim=dims, keepdim=True)
        image = (image - mean) * factor + mean
    if absent is not None:
        drop = absent.clone()
        per_channel = cfg.channel_drop_p if isinstance(cfg.channel_drop_p, tuple) else None
        if per_channel is not None and len(per_channel) != len(absent):
            raise TumorSegError(f"augmentation channel_drop_p names {len(per_channel)} channels, "
                                f"the run has {len(absent)}")
        if max(per_channel or (cfg.channel_drop_p,)) > 0:
            present = torch.nonzero(~absent).flatten().tolist()
            for c in present:
                if _u(gen) < (per_channel[c] if per_channel is not None else cfg.channel_drop_p):
                    drop[c] = True
            if bool(drop.all()) and present:  # keep one sequence the case has
                drop[present[int(torch.randint(0, len(present), (), generator=gen))]] = False
        if bool(drop.any()):
            image = image.clone()
            image[drop] = 0
    return image.contiguous(), target.contiguous()
