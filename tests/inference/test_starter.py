"""The word ``starter`` names the shipped automatic model wherever a checkpoint is asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.inference import starter


def test_starter_names_the_shipped_file_and_a_users_file_wins(tmp_path, monkeypatch):
    shipped = tmp_path / "resources"
    shipped.mkdir()
    (shipped / starter.STARTER_FILE).write_bytes(b"x")
    monkeypatch.setattr(starter.starter_path, "__defaults__", (shipped,))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert starter.checkpoint_argument("starter") == shipped / starter.STARTER_FILE
    assert starter.checkpoint_argument("model.pt") == Path("model.pt")
    (work / "starter").write_bytes(b"mine")  # a user's own file called "starter"
    assert starter.checkpoint_argument("starter") == Path("starter")


def test_an_install_without_it_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(starter.starter_path, "__defaults__", (tmp_path,))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TumorSegError, match="no starter model") as err:
        starter.checkpoint_argument("starter")
    assert "\n" not in str(err.value)
