"""SegFormer (MiT-b0..b5) for tumour segmentation (seed 002, Rahman et al.).

Built from Hugging Face transformers' ``SegformerConfig`` /
``SegformerForSemanticSegmentation`` with the official MiT variant sizes (Xie et al. 2021)
and the paper's two labels, 0 background and 1 tumour. Nothing is ever fetched from
the hub: the model is built from a config, and pretrained weights come only from a local
``save_pretrained`` directory or a ``.pt/.pth/.bin/.safetensors`` state dict file.

SegFormer's head predicts at 1/4 resolution; the paper's figure shows those
"downsampled labels". Here the input is padded to a multiple of 32 (so every stage is
an exact /4, /8, /16, /32 grid), the logits are bilinearly resized to the padded size and
cropped back, so the output has the input's spatial shape for any input size.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.models.blocks import adapt_input_conv, load_state_dict_file
from napari_tumorseg.models.common import crop_to, pad_to_multiple
from napari_tumorseg.models.registry import ModelInfo, TrainingPreset, register_model

LABELS = ["background", "tumour"]

# Official MiT encoder sizes (SegFormer paper, Table 6; nvidia/mit-b* configs).
VARIANTS: dict[str, dict] = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 18, 3], "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3], "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3], "decoder_hidden_size": 768},
    # Not a MiT size: the smallest working shape, for tests only.
    "tiny": {
        "hidden_sizes": [8, 16, 24, 32],
        "depths": [1, 1, 1, 1],
        "decoder_hidden_size": 16,
        "num_attention_heads": [1, 1, 1, 2],
    },
}
_COMMON = {"num_attention_heads": [1, 2, 5, 8], "sr_ratios": [8, 4, 2, 1], "mlp_ratios": [4, 4, 4, 4]}

# First patch-embedding conv: the only weight that depends on the channel count
# (named per transformers version).
_INPUT_CONVS = ("segformer.stages.0.patch_embeddings.proj.weight", "segformer.encoder.patch_embeddings.0.proj.weight")
_HEAD_KEYS = ("decode_head.classifier.weight", "decode_head.classifier.bias")


def variant_fields(variant: str) -> dict:
    """Architecture fields of a MiT variant, for :func:`segformer_config`."""
    if variant not in VARIANTS:
        raise TumorSegError(f"unknown SegFormer variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return {**_COMMON, **VARIANTS[variant]}


def segformer_config(fields: dict, in_channels: int, out_channels: int):
    """A ``SegformerConfig`` from architecture ``fields`` with our channels and labels."""
    from transformers import SegformerConfig

    known = SegformerConfig().to_dict()
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise TumorSegError(f"segformer: unknown config option(s) {', '.join(unknown)}")
    labels = LABELS if out_channels == 2 else [f"class_{i}" for i in range(out_channels)]
    return SegformerConfig(
        **fields,
        num_channels=in_channels,
        num_labels=out_channels,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )


class SegFormerSegmenter(nn.Module):
    """HF SegFormer with full-resolution logits of shape (N, out_channels, H, W)."""

    multiple = 32

    def __init__(self, config):
        super().__init__()
        from transformers import SegformerForSemanticSegmentation

        self.hf = SegformerForSemanticSegmentation(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp, spatial = pad_to_multiple(x, self.multiple)
        logits = self.hf(pixel_values=xp).logits
        logits = F.interpolate(logits, size=xp.shape[2:], mode="bilinear", align_corners=False)
        return crop_to(logits, spatial)


_ARCH_FIELDS = (
    "hidden_sizes",
    "depths",
    "decoder_hidden_size",
    "num_attention_heads",
    "sr_ratios",
    "mlp_ratios",
    "patch_sizes",
    "strides",
    "num_encoder_blocks",
)


def _weights_in(path: Path) -> tuple[dict | None, Path]:
    """(architecture fields from config.json or None, weights file) for a file or directory."""
    if path.is_file():
        return None, path
    if not path.is_dir():
        raise TumorSegError(f"pretrained SegFormer weights not found: {path}")
    arch = None
    cfg = path / "config.json"
    if cfg.is_file():
        try:
            raw = json.loads(cfg.read_text())
        except (OSError, ValueError) as err:
            raise TumorSegError(f"cannot read {cfg}: {err}") from None
        if raw.get("model_type") not in (None, "segformer"):
            raise TumorSegError(f"{path} holds a {raw.get('model_type')!r} model, not SegFormer")
        arch = {k: raw[k] for k in _ARCH_FIELDS if k in raw}
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return arch, path / name
    raise TumorSegError(f"{path} has no model.safetensors or pytorch_model.bin")


# transformers 5 renamed SegFormer's modules; checkpoints on disk may use either layout
# (every nvidia/* release uses the old one). (old, new); {i} is a stage index.
_RENAMES = [
    ("encoder.patch_embeddings.{i}.", "stages.{i}.patch_embeddings."),
    ("encoder.block.{i}.", "stages.{i}.blocks."),
    ("encoder.layer_norm.{i}.", "stages.{i}.layer_norm."),
    ("attention.self.query.", "attention.q_proj."),
    ("attention.self.key.", "attention.k_proj."),
    ("attention.self.value.", "attention.v_proj."),
    ("attention.self.sr.", "attention.sequence_reduction.sequence_reduction."),
    ("attention.self.layer_norm.", "attention.sequence_reduction.layer_norm."),
    ("attention.output.dense.", "attention.o_proj."),
    ("mlp.dense1.", "mlp.fc1."),
    ("mlp.dense2.", "mlp.fc2."),
    ("layer_norm_1.", "layernorm_before."),
    ("layer_norm_2.", "layernorm_after."),
    ("decode_head.linear_c.", "decode_head.linear_projections."),
]


def _rename(key: str, to_new: bool) -> str:
    for old, new in _RENAMES:
        src, dst = (old, new) if to_new else (new, old)
        pattern = re.escape(src).replace(re.escape("{i}"), r"(\d+)")
        key = re.sub(pattern, dst.replace("{i}", r"\1"), key)
    return key


def _normalise_keys(sd: dict[str, torch.Tensor], model_keys) -> dict[str, torch.Tensor]:
    """File keys in the naming of the installed transformers' model."""
    model_new = any(".stages." in k for k in model_keys)
    file_new = any(".stages." in k or k.startswith("stages.") for k in sd)
    out = {}
    for k, v in sd.items():
        if k.startswith("hf."):  # our own wrapper
            k = k[3:]
        if k.startswith(("encoder.", "stages.")):  # a bare SegformerModel
            k = "segformer." + k
        if model_new != file_new:
            k = _rename(k, to_new=model_new)
        out[k] = v
    return out


def load_segformer_weights(model: SegFormerSegmenter, file: Path) -> None:
    """Load SegFormer weights; a differently sized classifier (e.g. ImageNet or ADE20k) is
    left at its initialisation, a 3-channel input layer is adapted, anything else that does
    not fit is a one-line error."""
    target = model.hf.state_dict()
    sd = _normalise_keys(load_state_dict_file(file, "SegFormer"), target)
    enc_keys = [k for k in target if k.startswith("segformer.")]
    if not any(k in sd for k in enc_keys):
        raise TumorSegError(f"{file.name} holds no SegFormer (MiT) encoder weights")
    new = {}
    for key, ref in target.items():
        src = sd.get(key)
        if src is None:
            continue
        if key in _INPUT_CONVS and src.shape[1] != ref.shape[1]:
            src = adapt_input_conv(src, ref.shape[1])
        if src.shape != ref.shape:
            if key in _HEAD_KEYS:
                continue
            raise TumorSegError(
                f"{file.name}: {key} has shape {tuple(src.shape)}, the model needs {tuple(ref.shape)}"
                " (wrong SegFormer variant?)"
            )
        new[key] = src
    missing_enc = [k for k in enc_keys if k not in new]
    if missing_enc:
        raise TumorSegError(
            f"{file.name} lacks {len(missing_enc)} encoder weights (first: {missing_enc[0]}); wrong variant?"
        )
    model.hf.load_state_dict(new, strict=False)


@register_model(
    ModelInfo(
        name="segformer",
        paper="002_d2159bea954dfd3c.txt",
        description=(
            "SegFormer (MiT-b0..b5 via HF transformers, config 'variant'; the paper does not name "
            "one, b0 by default), labels 0 background / 1 tumour, logits resized to the input. "
            "Preset from the paper: lr 6e-4, batch 10, 15 epochs, Adam, cross-entropy, mIoU on "
            "validation; starts from pretrained weights (local directory or file)."
        ),
        dims=2,
        output="multiclass",
        input_multiple=32,
        input_size=(512, 512),
        in_channels=3,
        out_channels=2,
        class_names=list(LABELS),
        preset=TrainingPreset(
            loss="ce",
            optimizer="adam",
            lr=6e-4,
            scheduler="none",
            batch_size=10,
            epochs=15,
            amp=False,
            grad_clip=None,
        ),
        default_config={"variant": "b0"},
        tiny_config={"variant": "tiny"},
        pretrained="SegFormer/MiT weights: a local save_pretrained directory or a .pt/.safetensors state dict",
    )
)
def build_segformer(
    in_channels: int = 3, out_channels: int = 2, pretrained: str | None = None, variant: str = "b0", **config
) -> SegFormerSegmenter:
    """Build SegFormer; a ``pretrained`` directory's config.json sets the architecture.

    Extra ``config`` entries are SegformerConfig fields (e.g. ``drop_path_rate``).
    """
    if in_channels < 1 or out_channels < 1:
        raise TumorSegError("in_channels and out_channels must be >= 1")
    arch, file = _weights_in(Path(pretrained).expanduser()) if pretrained else (None, None)
    fields = {**_COMMON, **arch} if arch else variant_fields(variant)
    fields.update(config)
    try:
        model = SegFormerSegmenter(segformer_config(fields, in_channels, out_channels))
    except (TypeError, ValueError) as err:
        raise TumorSegError(f"segformer: bad config ({err})") from None
    if file is not None:
        load_segformer_weights(model, file)
    return model
