"""The Load study model: what the scan finds reaches the entries the dock lists."""

from __future__ import annotations

import shutil

from napari_tumorseg.io.study import Study


def test_a_slice_gap_found_by_the_scan_reaches_the_study_entry(shared_data, tmp_path):
    files = sorted((shared_data / "dicom_brainix" / "FLAIR").glob("*.dcm"))
    for f in files[:10] + files[11:]:
        shutil.copy(f, tmp_path / f.name)
    (entry,) = Study.scan(tmp_path).entries
    assert entry.shape[0] == 21
    assert len(entry.warnings) == 1 and "gap of 12.00 mm" in entry.warnings[0]


def test_a_complete_series_has_no_warning(shared_data):
    entries = Study.scan(shared_data / "dicom_brainix" / "FLAIR").entries
    assert [e.warnings for e in entries] == [[]]
