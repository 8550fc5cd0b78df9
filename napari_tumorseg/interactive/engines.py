"""Which click engine to use when the user did not say: the shipped starter model, else classic.

The Segment-by-clicks dock and ``tumorseg evaluate-clicks`` share this choice, and both say
which engine it made (``EngineChoice.reason``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path

from napari_tumorseg.errors import TumorSegError

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
STARTER_GLOB = "starter_click*.pt"
#: The shipped click model for volumes (trained on BraTS volumes, told the target); the
#: other ``starter_click*.pt`` is the one for single images.
VOLUME_STARTER = "starter_click_brats.pt"
#: The shipped click model for volumes that hold FLAIR or T1c but not both: the same model
#: widened to read any of FLAIR, T1, T1c, T2 (zeros for a missing one). Measured on the two
#: held-out cases (benchmarks/RESULTS_clicks.md): on a lone FLAIR or T1c it beats the classic
#: engine at the first clicks, on a lone T2 it is worse, and with every sequence it is below
#: the FLAIR + T1c model; so it answers only the cases that model cannot.
VOLUME_ANY = "starter_click_brats_any.pt"
#: A case must hold one of these for VOLUME_ANY to answer it (else: the classic engine).
VOLUME_ANY_NEEDS = ("FLAIR", "T1c")
VOLUME_MODELS = (VOLUME_STARTER, VOLUME_ANY)


@dataclass
class EngineChoice:
    engine: object
    reason: str


def starter_checkpoint(resources: Path = RESOURCES) -> Path | None:
    """The shipped click-guided starter checkpoint for single images, when the package has
    one (first by name)."""
    found = sorted(p for p in Path(resources).glob(STARTER_GLOB) if p.is_file() and p.name not in VOLUME_MODELS)
    return found[0] if found else None


def volume_starter_checkpoint(resources: Path = RESOURCES) -> Path | None:
    path = Path(resources) / VOLUME_STARTER
    return path if path.is_file() else None


def volume_any_checkpoint(resources: Path = RESOURCES) -> Path | None:
    path = Path(resources) / VOLUME_ANY
    return path if path.is_file() else None


def _holds_one_of(channel_names, sequences) -> bool:
    from napari_tumorseg.channels import sequence_of

    have = {sequence_of(str(n)).lower() for n in channel_names or ()}
    return any(s.lower() in have for s in sequences)


def engine_label(engine, default: str | None = None) -> str:
    """A model by its file (what the user can find in resources/), else ``default`` or the
    engine's own name: how the chain, the dock and the robot name who answered."""
    path = getattr(engine, "path", None)
    return Path(path).name if path else (default or str(engine.name))


def _needs(learned) -> str:
    names = list(learned.prep.channel_names or ())
    if names and learned.prep.missing_channels == "zeros":
        return f"any of {', '.join(names)}"
    return " + ".join(names) or f"{learned.model.image_channels} channel(s)"


class LearnedWhereItFits:
    """A learned engine for the cases that hold the sequences it reads, then (optionally) a
    second one for the cases that hold one of ``fallback_needs``, the classic engine for the
    others (an unnamed scan, a lone T2): chosen per call by :func:`segment_with_prompts`
    through :meth:`for_case`, so the dock and the robot make the same choice."""

    def __init__(self, learned, classic, fallback=None, fallback_needs=()):
        self.learned, self.classic = learned, classic
        self.fallback, self.fallback_needs = fallback, tuple(fallback_needs)
        self.needs = _needs(learned)
        self.name = f"{engine_label(learned)} on {self.needs}"
        if fallback is not None:
            self.name += f"; {engine_label(fallback)} on {' or '.join(self.fallback_needs)} alone"
        self.name += "; else classic"
        self.dims = learned.dims
        # Grows the positive clicks a learned engine does not follow (ClickGrower).
        self.grower = ClickGrower(classic)

    @property
    def precision(self):
        return self.learned.precision

    @precision.setter
    def precision(self, value) -> None:  # --precision reaches every model of the chain
        for engine in (self.learned, self.fallback):
            if engine is not None:
                engine.precision = value

    def fits(self, channel_names, n_channels: int) -> bool:
        if not channel_names:
            return not self.learned.prep.channel_names and n_channels == int(self.learned.model.image_channels)
        try:
            return self.learned.channels_for("lesion", list(channel_names)) is not None
        except TumorSegError:
            return False

    def for_case(self, channel_names, n_channels: int):
        if self.fits(channel_names, n_channels):
            return self.learned
        if self.fallback is not None and channel_names and _holds_one_of(channel_names, self.fallback_needs):
            try:
                if self.fallback.channels_for("lesion", list(channel_names)) is not None:
                    return self.fallback
            except TumorSegError:
                pass
        return self.classic

    def segment(self, image, spacing, prompts, prior=None, cancel=None):
        """A call that does not name the image's channels: the learned engine only when it
        reads unnamed channels and the image has as many; otherwise the classic engine."""
        engine = self.learned if self.fits(None, int(image.shape[0]) if image.ndim == 4 else 1) else self.classic
        return engine.segment(image, spacing, prompts, prior=prior, cancel=cancel)


def load_learned(path) -> object:
    """A learned engine from a checkpoint; a one-line error when that cannot be done."""
    try:
        from napari_tumorseg.interactive.learned import LearnedEngine
    except ImportError as err:
        raise TumorSegError(f"the learned click engine is not available ({err})") from None
    path = Path(path)
    if not path.is_file():
        raise TumorSegError(f"no checkpoint at {path}")
    try:
        return LearnedEngine.from_checkpoint(path)
    except TumorSegError:
        raise
    except Exception as err:  # a corrupt or foreign file: say so in one line
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TumorSegError(f"{path.name} is not a usable click checkpoint ({msg})") from None


#: Why volumes go to the classic engine: the click robot (benchmarks/RESULTS_clicks.md) on the
#: shipped 2D starter gives Dice ~0.4 after one click on BraTS volumes where the classic engine
#: gives ~0.73, while on single images the starter leads (0.87 vs 0.58 on coco_ravirawal).
VOLUME_REASON = "classic engine for a volume: the 2D starter model measured weaker in 3D than the classic engine"


def default_engine(resources: Path = RESOURCES, volume: bool = False) -> EngineChoice:
    """The best measured engine for the input, with the reason.

    Single images: the shipped starter model when one ships and loads, else classic.
    Volumes (``volume=True``): the shipped volume click model on the cases that hold the
    sequences it reads, the classic engine on the others; classic when none ships.
    """
    from napari_tumorseg.interactive.classic import ClassicEngine

    if volume:
        vckpt = volume_starter_checkpoint(resources)
        if vckpt is not None:
            try:
                learned = load_learned(vckpt)
            except TumorSegError as err:
                return EngineChoice(ClassicEngine(), f"classic engine (volume model {vckpt.name} unusable: {err})")
            fallback, note = None, ""
            anyckpt = volume_any_checkpoint(resources)
            if anyckpt is not None:
                try:
                    fallback = load_learned(anyckpt)
                except TumorSegError as err:
                    note = f" ({anyckpt.name} unusable: {err})"
            both = LearnedWhereItFits(learned, ClassicEngine(), fallback, VOLUME_ANY_NEEDS)
            # Measured better than the classic engine on unseen cases (benchmarks/RESULTS_clicks.md).
            if fallback is not None:  # the name says which model answers which case
                return EngineChoice(both, "the measured best for the sequences a case holds")
            return EngineChoice(both, f"volume click model {vckpt.name}{note}; classic engine for "
                                      f"a case without {both.needs}")
    ckpt = starter_checkpoint(resources)
    if ckpt is None:
        return EngineChoice(ClassicEngine(), "classic engine (no starter click model ships with this install)")
    try:
        engine = load_learned(ckpt)
    except TumorSegError as err:
        return EngineChoice(ClassicEngine(), f"classic engine (starter model {ckpt.name} unusable: {err})")
    if volume and getattr(engine, "dims", 2) != 3:
        return EngineChoice(ClassicEngine(), VOLUME_REASON)
    return EngineChoice(engine, f"starter click model {ckpt.name}")


def engine_from_name(name: str | None, volume: bool = False) -> EngineChoice:
    """'classic', a checkpoint path, or None/'auto' for :func:`default_engine`."""
    from napari_tumorseg.interactive.classic import ClassicEngine

    if name is None or name == "auto":
        return default_engine(volume=volume)
    if name == "classic":
        return EngineChoice(ClassicEngine(), "classic engine (asked for)")
    return EngineChoice(load_learned(name), f"learned click model {Path(name).name}")


def reads_previous_mask(engine) -> bool:
    """Whether ``engine`` is a click-guided network that reads a previous mask (it can take a
    prediction to correct as that mask); refine's local edits serve the others."""
    encoding = getattr(engine, "encoding", None)
    return bool(getattr(encoding, "with_prev_mask", False)) and hasattr(engine, "probability_at")


def segment_with_prompts(engine, image, spacing, prompts, prior=None, cancel=None, previous=None,
                         target: str = "lesion", channel_names=None):
    """THE call from prompts to a mask — the dock's and the click robot's (so what the robot
    measures is what the user gets). With a ``prior`` (a prediction, an existing mask) the
    prompts refine it: a positive click adds what it missed, a negative click removes a false
    positive, the rest stays - a network that reads a previous mask (:func:`reads_previous_mask`)
    is given the prior as that mask and answers the clicks; other engines go through
    :func:`napari_tumorseg.interactive.refine.refine_with_prompts`. Without a prior, the engine
    segments from the prompts (the classic engine folds new clicks into its last answer when
    the image is the same).

    ``target`` (:data:`napari_tumorseg.interactive.targets.TARGETS`) is what the user
    segments; an engine with ``channels_for(target, channel_names)`` (the classic one) reads
    only the channels it names. Every answer is then held to the never-worse rule
    (:func:`napari_tumorseg.interactive.guard.hold_to_clicks`) against ``previous``, the
    (prompts, mask) on screen before (None: nothing yet, or the prior when there is one).
    """
    import numpy as np

    from napari_tumorseg.interactive.guard import hold_to_clicks
    from napari_tumorseg.interactive.prompts import Prompts
    from napari_tumorseg.interactive.targets import check_target, select_channels

    check_target(target)
    case_image = image = np.asarray(image)
    chain = engine
    for_case = getattr(engine, "for_case", None)
    if for_case is not None:  # a learned engine where the case has its sequences, else classic
        engine = for_case(channel_names, int(image.shape[0]) if image.ndim == 4 else 1)
    set_target = getattr(engine, "set_target", None)
    if set_target is not None:
        set_target(target)
    image = select_channels(engine, image, target, channel_names)
    by_network = prior is not None and reads_previous_mask(engine)
    if by_network:
        # The network corrects the prior itself: it reads it as its previous mask, as it
        # was trained to read its own last answer (refine's local edits around each click
        # left the starter's over-drawn oedema of BraTS-GLI-00000 at 0.72 after ten clicks;
        # this reaches 0.84, benchmarks/RESULTS_clicks.md).
        mask = np.asarray(engine.segment(image, spacing, prompts, prior=np.asarray(prior, bool).reshape(image.shape[1:]),
                                         cancel=cancel), bool)
    elif prior is not None:
        from napari_tumorseg.interactive.refine import refine_with_prompts

        mask = np.asarray(refine_with_prompts(prior, image, spacing, prompts, engine, cancel=cancel), bool)
    else:
        mask = np.asarray(engine.segment(image, spacing, prompts, prior=None, cancel=cancel), bool)
    if cancel is not None and cancel():
        return mask  # superseded: the caller drops this answer
    if previous is None:
        shape = mask.shape
        base = np.zeros(shape, bool) if prior is None else np.asarray(prior, bool).reshape(shape)
        previous = (Prompts(), base)
    if getattr(engine, "probability_at", None) is not None:
        grower = getattr(chain, "grower", None) or _grower_of(engine)
        mask = grower(engine, case_image, spacing, prompts, mask, target, channel_names, cancel)
        if cancel is not None and cancel():
            return mask
    held = hold_to_clicks(mask, prompts, spacing, previous, bound_removals=prior is not None)
    remember = getattr(engine, "remember", None)
    if (prior is None or by_network) and remember is not None:
        remember(image, spacing, prompts, held)  # the next click folds into what is on screen
    return held


_GROWERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # learned engine -> its ClickGrower


def _grower_of(learned) -> "ClickGrower":
    """The :class:`ClickGrower` of a learned engine that no chain gave a classic engine (one
    per learned engine, so its state and per-image work carry from click to click)."""
    from napari_tumorseg.interactive.classic import ClassicEngine

    grower = _GROWERS.get(learned)
    if grower is None:
        grower = _GROWERS[learned] = ClickGrower(ClassicEngine())
    return grower


class ClickGrower:
    """Grows, with the classic engine, the positive clicks a learned engine does not follow.

    A click counts as not followed when the network's probability of the target under it
    is below the threshold its answer was cut at: the network answered it with the click's
    disk and nothing more. Why: a network that has not learned a case's look does exactly
    that. Measured with the robot on an unseen BraTS 2021 case with faint oedema (a model
    trained without it; benchmarks/RESULTS_clicks.md): whole tumour 0.69 after the first
    click and 0.69 after the tenth, each click adding ~80 voxels of the 90 mL missed, where
    the classic engine, growing from the same clicks, reached 0.85.

    The object the classic engine grows from every such click (the case's negative clicks
    as its background; the channels it reads for the target) is added to the network's
    answer within the reach refine gives a click on a missed part (a ball as large as the
    answer, at least 10 mm and a tenth of the field of view). It is kept from click to click
    (the network re-answers the slices it propagates through and would drop it) and grown
    again when a new negative click lands in it, which is also cut round that click. A change
    of image, target or prompts other than added clicks starts afresh. The never-worse rule
    then holds the answer like any other. Clicks correcting a prior (a prediction) get the
    same: there the network answers refine's call for the clicks outside the prior.
    """

    #: A network probability below this rules a voxel out of what a click grows.
    RULED_OUT = 1e-3

    def __init__(self, classic) -> None:
        self.classic = classic
        self._key = None  # (image content, target, spacing) of the clicks below
        self._prompts = None  # the prompts of the last call
        self._clicks: list = []  # the positive clicks grown so far
        self._region = None  # what they grew (bool, the image grid)

    def __call__(self, learned, image, spacing, prompts, mask, target: str = "lesion",
                 channel_names=None, cancel=None):
        import numpy as np

        from napari_tumorseg.content_key import content_key
        from napari_tumorseg.interactive.guard import new_clicks
        from napari_tumorseg.interactive.prompts import Cancelled, Prompts
        from napari_tumorseg.interactive.refine import _clear_near, _hits, _reach
        from napari_tumorseg.interactive.targets import select_channels

        spacing = tuple(float(s) for s in spacing)
        key = (content_key(image), target, spacing)
        added = None if self._prompts is None or key != self._key else new_clicks(prompts, self._prompts)
        if added is None:  # another image, target or prompt history: nothing grown yet
            self._key, self._clicks, self._region = key, [], None
            added = (np.asarray(prompts.positive, float).reshape(-1, 3),
                     np.asarray(prompts.negative, float).reshape(-1, 3))
        self._prompts = prompts
        fresh = []
        for point in np.asarray(added[0], float).reshape(-1, 3):
            said = learned.probability_at(point)
            if said is not None and said[0] < said[1]:
                fresh.append(point)
        self._clicks += fresh
        if not self._clicks:
            return mask
        negatives = np.asarray(prompts.negative, float).reshape(-1, 3)
        old = self._region
        cuts = [] if old is None else _hits(old, added[1])  # new negative clicks in the grown part
        if not (fresh or cuts):
            return mask | self._region
        region = np.zeros(mask.shape, bool) if old is None else old.copy()
        if fresh:
            # Each click grows its own object (one classic call a click, the case's negative
            # clicks as background): two faint clicks solved together leaked into 60 mL of
            # normal tissue on a BraTS case where each alone did not.
            cls_image = select_channels(self.classic, np.asarray(image), target, channel_names)
            for point in fresh:
                ask = Prompts(positive=np.asarray([point]), negative=negatives)
                try:
                    grown = np.asarray(self.classic.segment_prompts(cls_image, spacing, ask, cancel=cancel), bool)
                except Cancelled:
                    self._prompts = None  # superseded: the caller drops this answer
                    return mask
                grown = grown.reshape(mask.shape) & _reach(mask, [point], spacing)
                region |= self._plausible(learned, grown)
        # A negative click in the grown part cuts it round the click, as refine cuts a
        # prediction: within twice the click's depth in what was grown (a leak's width),
        # never past half the way to a grown click.
        clicks = np.asarray(self._clicks)
        for q in cuts:
            cap = 0.5 * float(np.sqrt((((clicks - q) * spacing) ** 2).sum(axis=1)).min())
            _clear_near(region, old, region.copy(), q, spacing, cap)
        # What the grown part no longer holds goes from the answer too: the network's
        # answer starts from the answer on screen and would carry it along.
        if old is not None:
            mask = mask & ~(old & ~region)
        self._region = region
        return mask | self._region

    @staticmethod
    def _plausible(learned, grown):
        """``grown`` without the voxels the network rules out (probability below
        ``RULED_OUT``; 0 on the slices it did not run). The classic engine follows intensity
        alone and can leak into normal tissue of the same brightness; measured on the
        case above, what it grew from a faint click in missed oedema had a median network
        probability of 0.004-0.007 inside the truth and 0.0001 outside."""
        import numpy as np

        p = learned.probability_over(grown)
        if p is None:
            return grown
        out = np.zeros_like(grown)
        out[grown] = p >= ClickGrower.RULED_OUT
        return out


def prepare_for_prompts(engine, image, channel_names=None) -> bool:
    """Do now what the first click on ``image`` would pay for: the engine that will answer
    it (a chain picks by the case's sequences, as :func:`segment_with_prompts` does) reads
    its channels and normalises the case once (BraTS 240x240x155, four sequences: a first
    click 2.2 s, the next 0.2-0.4 s). True when there was such work (a learned engine); the
    classic engine prepares nothing ahead.
    """
    import numpy as np

    from napari_tumorseg.interactive.targets import select_channels

    image = np.asarray(image)
    for_case = getattr(engine, "for_case", None)
    if for_case is not None:
        engine = for_case(channel_names, int(image.shape[0]) if image.ndim == 4 else 1)
    prepare = getattr(engine, "prepare", None)
    if prepare is None:
        return False
    # A learned engine's channels do not depend on the target (its checkpoint names them).
    prepare(select_channels(engine, image, "lesion", channel_names))
    return True
