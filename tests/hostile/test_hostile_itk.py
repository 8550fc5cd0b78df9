"""Hostile NRRD / MetaImage files (issue 15): each is refused in one line naming the file,
with nothing of ITK's multi-line report on stderr, whoever opens it (CLI, napari's reader,
Load study)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from napari_tumorseg.cli import main
from napari_tumorseg.errors import ReadError
from tests.hostile.conftest import assert_one_line_error

FLAIR_MHA = ("brats2012_hg0015", "BRATS_HG0015_FLAIR.mha")


def _cli(argv, capfd) -> tuple[int, str]:
    """In-process ``tumorseg ARGV``, stderr read at the file-descriptor level: what ITK's C++
    code prints there counts too."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capfd.readouterr().err


def _corpus(shared_data, tmp) -> dict:
    whole = (shared_data.joinpath(*FLAIR_MHA)).read_bytes()
    files = {
        "cut.mha": whole[: len(whole) // 2],  # compressed voxels cut in half
        "header_only.mha": whole[:200],  # cut inside the header
        "empty.mha": b"",
        "bad_type.nrrd": b"NRRD0004\ntype: shrt\ndimension: 3\nsizes: 6 5 4\nencoding: raw\n\n" + b"\0" * 240,
        "bad_sizes.nrrd": b"NRRD0004\ntype: short\ndimension: 3\nsizes: 6 5\nencoding: raw\n\n" + b"\0" * 240,
        "not_nrrd.nrrd": b"hello, this is not a NRRD file\n",
        "cut_raw.nrrd": b"NRRD0004\ntype: short\ndimension: 3\nsizes: 6 5 4\nencoding: raw\n\n" + b"\0" * 100,
        "cut_gzip.seg.nrrd": (b"NRRD0004\ntype: unsigned char\ndimension: 3\nsizes: 60 50 40\nencoding: gzip\n"
                              b"Segment0_Name:=x\nSegment0_LabelValue:=1\n\n"
                              + gzip.compress(np.ones(120000, np.uint8).tobytes())[:-30]),
        "orphan.mhd": (b"ObjectType = Image\nNDims = 3\nDimSize = 6 5 4\nElementType = MET_SHORT\n"
                       b"ElementDataFile = orphan.raw\n"),
    }
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    return files


def test_every_bad_file_is_one_line_in_info_and_convert(shared_data, tmp_path, capfd):
    for name in _corpus(shared_data, tmp_path):
        path = tmp_path / name
        code, err = _cli(["info", path], capfd)
        line = assert_one_line_error(code, err, name)
        assert str(tmp_path) not in line, line  # the file's name, never its folders
        code, err = _cli(["convert", path, "-o", tmp_path / "out.nrrd"], capfd)
        assert_one_line_error(code, err, name)
        assert not (tmp_path / "out.nrrd").exists()


@pytest.mark.parametrize("name, words", [
    ("cut.mha", ["truncated", "1194567 of 2389480"]),
    ("bad_type.nrrd", ["not a readable NRRD", "shrt"]),
    ("cut_gzip.seg.nrrd", ["NRRD"]),
    ("orphan.mhd", ["orphan.raw", "missing"]),
])
def test_the_reason_is_named(shared_data, tmp_path, capfd, name, words):
    _corpus(shared_data, tmp_path)
    code, err = _cli(["info", tmp_path / name], capfd)
    assert_one_line_error(code, err, name, *words)


def test_napari_reader_and_study_scan_refuse_in_one_line(shared_data, tmp_path, capfd):
    from napari_tumorseg._reader import napari_get_reader, read_layers
    from napari_tumorseg.io.study import Study

    _corpus(shared_data, tmp_path)
    for name in ("cut.mha", "bad_type.nrrd"):
        path = tmp_path / name
        assert callable(napari_get_reader(str(path)))
        with pytest.raises(ReadError) as err:
            read_layers(str(path))
        assert "\n" not in str(err.value) and name in str(err.value)
        with pytest.raises(ReadError):
            Study.scan(path)
    assert capfd.readouterr().err == ""  # nothing of ITK's own report leaked
