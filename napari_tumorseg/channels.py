"""Which scans feed which input channel of a model: one rule for the CLI and the docks.

A checkpoint records the channel names it was trained on (``channel_names``, e.g.
``["FLAIR", "T1c"]``) and how the data's channels were adapted (``channel_mode``:
``as_is``, ``grayscale`` for RGB JPGs of grey scans, ``repeat`` for a grey scan fed to an
ImageNet-initialised 3-channel encoder). At prediction the case's scans are matched to those
names by MR sequence; a model that needs more channels than the case holds is refused —
repeating one scan to fill FLAIR, T1, T1c and T2 returns a confident answer computed from
the wrong inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.io.nifti import guess_sequence, sequence_of  # noqa: F401 (sequence_of: this module's API)
from napari_tumorseg.io.volume import Volume


def _key(name: str) -> str:
    return (guess_sequence(name) or name).strip().lower()


#: The order of channels a model trained on several sources gets (the sequences they share).
SEQUENCE_ORDER = ("FLAIR", "T1", "T1c", "T2")


def _all_named(names: Sequence[str]) -> bool:
    return bool(names) and all(guess_sequence(str(n)) for n in names)


def channel_indices(have: Sequence[str], wanted: Sequence[str], where: str = "the case",
                    missing: str = "refuse") -> list[int | None] | None:
    """Where each ``wanted`` channel is among a case's channels ``have``, matched by MR
    sequence (a BraTS 2021 ``..._t1ce`` is a 2023 ``...-t1c`` is ``T1c``); None when a name
    on either side says no sequence (the stored order is then the only order there is).
    ``missing="zeros"``: a sequence the case lacks is None in the list (a zero channel for a
    model trained to read any subset); the case must still hold one of them."""
    if not (_all_named(have) and _all_named(wanted)):
        return None
    keys = [_key(str(n)) for n in have]
    out = []
    for w in wanted:
        hits = [i for i, k in enumerate(keys) if k == _key(str(w))]
        if not hits and missing == "zeros":
            out.append(None)
            continue
        if len(hits) != 1:
            raise TumorSegError(f"{where}: {'no' if not hits else len(hits)} {sequence_of(str(w))} scan"
                                f"{'' if len(hits) < 2 else 's'} among its channels ({', '.join(map(str, have))})")
        out.append(hits[0])
    if all(i is None for i in out):
        raise TumorSegError(f"{where}: none of {', '.join(map(str, wanted))} among its channels "
                            f"({', '.join(map(str, have))})")
    return out


def take_channels(czyx, indices):
    """``czyx`` with the channels at ``indices``, a zero channel where an index is None."""
    import numpy as np

    czyx = np.asarray(czyx)
    if all(i is not None for i in indices):
        return czyx[list(indices)]
    out = np.zeros((len(indices), *czyx.shape[1:]), czyx.dtype)
    for k, i in enumerate(indices):
        if i is not None:
            out[k] = czyx[i]
    return out


def shared_channels(name_lists: Sequence[Sequence[str] | None]) -> tuple[str, ...] | None:
    """The channels a model trained on cases of several sources gets: the MR sequences every
    case holds, in FLAIR, T1, T1c, T2 order. None when the cases already agree (the same
    sequences in the same order) or a case's names do not all say a sequence."""
    lists = [tuple(str(n) for n in names) for names in name_lists if names]
    if len(lists) != len(name_lists) or not lists or not all(_all_named(n) for n in lists):
        return None
    seqs = [tuple(guess_sequence(n) for n in names) for names in lists]
    if len(set(seqs)) == 1:
        return None
    common = set(seqs[0]).intersection(*map(set, seqs[1:]))
    if not common:
        raise TumorSegError("the training cases share no MR sequence: "
                            + "; ".join(sorted({", ".join(s) for s in seqs})))
    return tuple(s for s in SEQUENCE_ORDER if s in common)


def order_by_names(volumes: list[Volume], names: list[str] | None) -> list[Volume]:
    """``volumes`` in the order of ``names`` (a checkpoint's channel names).

    Every name must match exactly one volume by MR sequence (or by name); otherwise the
    error says which channel is missing or ambiguous. Without names the order is kept.
    """
    if not names:
        return list(volumes)
    ordered: list[Volume] = []
    for wanted in names:
        key = _key(wanted)
        hits = [v for v in volumes if _key(sequence_of(v) or v.name) == key
                and not any(v is o for o in ordered)]
        if not hits:
            hits = [v for v in volumes if key in v.name.lower() and not any(v is o for o in ordered)]
        if len(hits) != 1:
            have = ", ".join(sequence_of(v) or v.name for v in volumes) or "none"
            what = "no scan" if not hits else f"{len(hits)} scans"
            raise TumorSegError(f"the model's channel {wanted!r} matches {what} of the case (scans: {have})")
        ordered.append(hits[0])
    return ordered


@dataclass(frozen=True)
class ChannelPlan:
    """What the model needs: its input channel count, their names and the adaptation mode."""

    channels: int
    names: tuple[str, ...] = ()
    mode: str = "as_is"

    @classmethod
    def from_preprocessing(cls, prep: dict) -> "ChannelPlan":
        names = prep.get("channel_names") or ()
        return cls(int(prep.get("channels", 1)), tuple(str(n) for n in names), str(prep.get("channel_mode", "as_is")))

    def describe(self) -> str:
        return ", ".join(self.names) if self.names else f"{self.channels} channel(s)"


def fit_channels(czyx: np.ndarray, plan: ChannelPlan, where: str = "the image") -> np.ndarray:
    """(c, z, y, x) -> (plan.channels, z, y, x), only by the adaptation the model was trained with."""
    c = czyx.shape[0]
    if c == plan.channels:
        return czyx
    if plan.channels == 1 and c in (3, 4):
        # RGB(A) exports of grey scans: training averaged them the same way.
        return czyx[:3].astype(np.float32).mean(axis=0, keepdims=True)
    if c == 1 and (plan.mode == "repeat" or (plan.channels == 3 and not plan.names)):
        # Trained with a grey scan repeated, or an RGB model (unnamed channels: pictures of grey
        # scans, R = G = B): a grey picture is the same input. Named MR channels never are.
        return np.repeat(czyx, plan.channels, axis=0)
    raise TumorSegError(
        f"the model needs {plan.channels} input channels ({plan.describe()}) but {where} has {c}; "
        "open the other scans of the case (Load study: 'as channels') — one scan is never repeated "
        "to stand in for the others"
    )


def on_grid(vol: Volume, primary: Volume) -> bool:
    """Whether ``vol`` lies on ``primary``'s voxel grid (shape and affine): the only way two
    scans become channels of one input, since nothing is resampled."""
    return vol.spatial_shape == primary.spatial_shape and np.allclose(vol.affine, primary.affine, atol=1e-2)


def assemble_input(primary: Volume, others: list[Volume], plan: ChannelPlan) -> Volume:
    """The model input for a case: ``primary`` alone, or with scans from ``others`` as channels.

    ``others`` are candidate scans of the same case (e.g. the other layers of the viewer, or
    the other series of a study folder). They are used only when ``primary`` has fewer
    channels than the model needs; then they are matched to the checkpoint's channel names
    and must share ``primary``'s grid.
    """
    from napari_tumorseg.io.readers import common_words, combine_channels

    have = primary.data.shape[0] if primary.has_channels else 1
    if primary.has_channels and plan.names and have >= plan.channels:
        # A case with more sequences than the model reads (FLAIR, T1, T1c, T2 for a FLAIR +
        # T1c model): the model's own, by name, in its order.
        return _reordered(primary, plan)
    if have >= plan.channels or (plan.channels == 1):
        return primary
    if have == 1 and (plan.mode == "repeat" or (plan.channels == 3 and not plan.names)):
        return primary
    pool = [primary] + [v for v in others if v is not primary and v.kind == "image" and not v.has_channels]
    if plan.names:
        try:
            chosen = order_by_names(pool, list(plan.names))
        except TumorSegError as err:
            raise TumorSegError(f"the model needs {plan.channels} input channels ({plan.describe()}): {err}") from None
    elif len(pool) == plan.channels:
        chosen = pool
    else:
        raise TumorSegError(
            f"the model needs {plan.channels} input channels but the checkpoint does not name them "
            f"and the case has {len(pool)} scans: open them as channels of one case in the right order"
        )
    same_grid = [v for v in chosen if on_grid(v, primary)]
    if len(same_grid) != len(chosen):
        off = next(v for v in chosen if not any(v is s for s in same_grid))
        raise TumorSegError(f"scan '{off.name}' is not on the grid of '{primary.name}'; nothing is resampled")
    # Named for the case the scans share ("BraTS2021_00006" of its _flair, _t1ce files), not
    # for the one scan the user had selected: the result is the case's, not that sequence's.
    return combine_channels(chosen, name=common_words([v.name for v in chosen]) or primary.name)


def _reordered(case: Volume, plan: ChannelPlan) -> Volume:
    """A multi-channel case with its channels in the checkpoint's order.

    Channels whose names say no MR sequence (R, G, B of a JPG) keep their order; named
    sequences that cannot all be matched are an error, never a silent mix-up.
    """
    from dataclasses import replace

    keys = [_key(n) for n in case.channel_names]
    if not any(guess_sequence(n) for n in case.channel_names):
        return case
    order = []
    for wanted in plan.names:
        hits = [i for i, k in enumerate(keys) if k == _key(wanted) and i not in order]
        if len(hits) != 1:
            raise TumorSegError(f"the model's channel {wanted!r} is not one of the case's channels "
                                f"({', '.join(case.channel_names)})")
        order.append(hits[0])
    if order == list(range(len(keys))):
        return case
    return replace(case, data=case.data[order], channel_names=[case.channel_names[i] for i in order])
