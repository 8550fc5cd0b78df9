"""Crash-recovery snapshots: atomic, per user, and offered back only when their writer is gone."""

import subprocess
import sys

import numpy as np

from napari_tumorseg import recovery


def test_a_snapshot_of_a_live_process_is_not_an_orphan(tmp_path):
    labels = np.zeros((3, 16, 16), np.uint8)
    labels[1, 4:8, 4:8] = 2
    geo = {"scale": [5.0, 0.8, 0.8], "translate": [0.0, 1.0, 2.0], "affine": np.eye(4).tolist()}
    path = recovery.write_snapshot("k1", labels, name="edited", geometry=geo, folder=tmp_path)
    snap = recovery.read_snapshot(path)
    np.testing.assert_array_equal(snap.load(), labels)
    assert snap.header["geometry"] == geo and snap.name == "edited"
    assert recovery.orphans(tmp_path) == []  # we are alive
    # a second write replaces the first atomically: one file, the newest voxels
    labels[0, 0, 0] = 1
    recovery.write_snapshot("k1", labels, name="edited", geometry=geo, folder=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["k1.labels.npz"]
    assert recovery.read_snapshot(path).load()[0, 0, 0] == 1


def test_a_stepped_clock_does_not_orphan_a_live_process(tmp_path):
    """The wall clock stepped a minute (NTP): this process's wall-clock start reads otherwise,
    its boot and start ticks do not; a pid reused after the writer died has other ticks."""
    import os

    me = recovery._identity(os.getpid())
    if "ticks" not in me:
        import pytest

        pytest.skip("no /proc here: the wall-clock start is all there is")
    stepped = {**me, "started": me["started"] + 60.0}
    assert recovery._owner_alive(stepped)
    assert not recovery._owner_alive({**stepped, "ticks": me["ticks"] + 1})
    assert not recovery._owner_alive({**stepped, "boot": "another boot"})
    # Snapshots written before the ticks were recorded keep the wall-clock rule.
    assert recovery._owner_alive({"pid": me["pid"], "started": me["started"]})


def test_a_dead_writer_leaves_an_orphan_and_damaged_files_are_skipped(tmp_path):
    code = ("import numpy as np\nfrom pathlib import Path\nfrom napari_tumorseg import recovery\n"
            f"recovery.write_snapshot('gone', np.ones((2, 4, 4), np.uint8), name='x', geometry={{}}, "
            f"folder=Path({str(tmp_path)!r}))\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    (tmp_path / "junk.labels.npz").write_bytes(b"not a snapshot")
    found = recovery.orphans(tmp_path)
    assert [s.path.name for s in found] == ["gone.labels.npz"]
    assert found[0].load().sum() == 32
    found[0].discard()
    assert recovery.orphans(tmp_path) == []


def test_the_period_is_at_most_a_minute(monkeypatch):
    monkeypatch.delenv("TUMORSEG_AUTOSAVE_SECONDS", raising=False)
    assert recovery.autosave_seconds() <= 60
    monkeypatch.setenv("TUMORSEG_AUTOSAVE_SECONDS", "600")
    assert recovery.autosave_seconds() == 60
    monkeypatch.setenv("TUMORSEG_AUTOSAVE_SECONDS", "nonsense")
    assert recovery.autosave_seconds() == recovery.DEFAULT_AUTOSAVE_SECONDS


def test_the_folder_is_private_and_not_beside_the_data(monkeypatch, tmp_path, shared_data):
    monkeypatch.delenv("TUMORSEG_RECOVERY_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    folder = recovery.recovery_dir()
    assert str(folder).startswith(str(tmp_path)) and shared_data not in folder.parents
    assert (folder.stat().st_mode & 0o077) == 0
