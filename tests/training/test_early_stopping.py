"""Optional early stopping: a run whose validation score stops improving ends early."""

from napari_tumorseg.training.engine import TrainConfig, train
from napari_tumorseg.training.events import DoneEvent, EpochEvent


def _run(shared_data, tmp_path, patience, epochs=6):
    # A vanishing learning rate: the score barely moves, so improvement stalls quickly.
    cfg = TrainConfig(model="unet", data=shared_data / "coco_ravirawal", out_dir=str(tmp_path),
                      epochs=epochs, batch_size=4, size=48, tiny=True, lr=1e-12, max_train_items=4,
                      max_val_items=4, augmentation=False, scheduler="none",
                      early_stopping_patience=patience)
    events = list(train(cfg))
    return [e for e in events if isinstance(e, EpochEvent)], events[-1]


def _stall_lengths(epochs):
    """Epochs since the last best one, after each epoch."""
    out, since = [], 0
    for e in epochs:
        since = 0 if e.is_best else since + 1
        out.append(since)
    return out


def test_patience_stops_exactly_when_the_score_has_stalled(shared_data, tmp_path):
    epochs, done = _run(shared_data, tmp_path / "es", patience=1)
    assert isinstance(done, DoneEvent)
    stalls = _stall_lengths(epochs)
    if done.stopped_early:
        # Stopped at the first epoch that did not improve, and not before.
        assert stalls[-1] == 1 and all(s == 0 for s in stalls[:-1])
        assert len(epochs) < 6
    else:
        assert len(epochs) == 6 and all(s == 0 for s in stalls)
    best = max(e.epoch for e in epochs if e.is_best) + 1
    assert done.best_epoch == best


def test_without_patience_every_epoch_runs(shared_data, tmp_path):
    epochs, done = _run(shared_data, tmp_path / "all", patience=None, epochs=3)
    assert isinstance(done, DoneEvent) and not done.stopped_early
    assert len(epochs) == 3
