"""ConvNeXt V2 tumour-type classifier (seed 002, Rahman et al.).

timm's ConvNeXt V2 (Woo et al. 2023: ConvNeXt blocks with global response normalisation)
built with ``pretrained=False``; weights only ever come from a local file. Four classes,
in the order of the paper's confusion matrix (the alphabetical folder order of the
Kaggle brain-tumour MRI sets it merges): glioma, meningioma, no tumour, pituitary.

The paper does not name the size; ``tiny`` (28M parameters) is the default, ``atto``
(3.4M) ... ``nano`` are there for small machines and tests. Input 224x224, the
resolution ConvNeXt V2 is fine-tuned at.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models.blocks import adapt_input_conv, load_state_dict_file
from napari_tumorseg.models.registry import ModelInfo, TrainingPreset, register_model

CLASS_NAMES = ["glioma", "meningioma", "no tumour", "pituitary"]
VARIANTS = ("atto", "femto", "pico", "nano", "tiny")

_STEM = "stem.0.weight"
_HEAD_PREFIX = "head.fc."


def load_convnextv2_weights(model: nn.Module, path: str) -> None:
    """Load a timm (or original facebookresearch) ConvNeXt V2 state dict file.

    The classifier ``head.fc`` is dropped when its class count differs (ImageNet 1000 vs
    our 4) and stays at its initialisation; an RGB stem is adapted to 1 or 4 channels.
    Any other mismatch is a one-line :class:`TumorSegError`.
    """
    from timm.models.convnext import checkpoint_filter_fn

    sd = load_state_dict_file(path, "convnextv2 (a timm ConvNeXt V2 state dict)")
    if not any(k.startswith(("stem.", "stages.", "downsample_layers.")) for k in sd):
        raise TumorSegError(f"{path} does not look like a ConvNeXt V2 state dict (no stem/stages weights)")
    target = model.state_dict()
    if _STEM in target and _STEM in sd and sd[_STEM].ndim == 4 and sd[_STEM].shape[1] != target[_STEM].shape[1]:
        sd[_STEM] = adapt_input_conv(sd[_STEM], target[_STEM].shape[1])
    try:
        # Renames the original repo's keys (downsample_layers, dwconv, grn.gamma ...)
        # to timm's; a timm state dict passes through unchanged.
        sd = checkpoint_filter_fn(sd, model)
    except Exception as err:
        raise TumorSegError(f"{path} is not a ConvNeXt V2 state dict ({type(err).__name__}: {err})") from None
    new = {}
    for key, ref in target.items():
        src = sd.get(key)
        if src is None:
            continue
        if key == _STEM and src.shape[1] != ref.shape[1]:
            src = adapt_input_conv(src, ref.shape[1])
        if src.shape != ref.shape:
            if key.startswith(_HEAD_PREFIX):
                continue
            raise TumorSegError(
                f"{path}: {key} has shape {tuple(src.shape)}, the model needs {tuple(ref.shape)}"
                " (wrong ConvNeXt V2 variant?)"
            )
        new[key] = src
    missing = [k for k in target if k not in new and not k.startswith(_HEAD_PREFIX)]
    if missing:
        raise TumorSegError(f"{path} lacks {len(missing)} ConvNeXt V2 weights (first: {missing[0]})")
    model.load_state_dict(new, strict=False)


@register_model(
    ModelInfo(
        name="convnextv2",
        paper="002_d2159bea954dfd3c.txt",
        description=(
            "ConvNeXt V2 classifier (timm, config 'variant' atto/femto/pico/nano/tiny; the paper "
            "does not name the size, tiny by default), 4 tumour types, (N, 4) logits. Preset: the "
            "paper states Adam and cross-entropy, fine-tuned from pretrained weights, accuracy on "
            "validation; lr/batch/epochs are not stated (lr 5e-5 = HF Trainer default, batch 32, "
            "10 epochs)."
        ),
        dims=2,
        output="classes",
        input_multiple=32,
        input_size=(224, 224),
        in_channels=3,
        out_channels=4,
        class_names=list(CLASS_NAMES),
        preset=TrainingPreset(
            loss="ce",
            optimizer="adam",
            lr=5e-5,
            scheduler="none",
            batch_size=32,
            epochs=10,
            amp=False,
            grad_clip=None,
        ),
        default_config={"variant": "tiny"},
        tiny_config={"variant": "atto"},
        pretrained="timm ConvNeXt V2 state dict file (.pth/.pt/.safetensors); ImageNet head is dropped",
    )
)
def build_convnextv2(
    in_channels: int = 3, out_channels: int = 4, pretrained: str | None = None, variant: str = "tiny", **config
) -> nn.Module:
    """Build a timm ConvNeXt V2 classifier; extra ``config`` goes to ``timm.create_model``
    (e.g. ``drop_path_rate``)."""
    import timm

    if variant not in VARIANTS:
        raise TumorSegError(f"unknown ConvNeXt V2 variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if in_channels < 1 or out_channels < 1:
        raise TumorSegError("in_channels and out_channels must be >= 1")
    try:
        model = timm.create_model(
            f"convnextv2_{variant}", pretrained=False, num_classes=out_channels, in_chans=in_channels, **config
        )
    except TypeError as err:
        raise TumorSegError(f"convnextv2: bad config ({err})") from None
    if pretrained:
        load_convnextv2_weights(model, pretrained)
    return model


def predict_proba(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, 4) for a batch, in :data:`CLASS_NAMES` order."""
    return model(x).softmax(dim=1)
