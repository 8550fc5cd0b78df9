"""Shared fixtures: the real MRI data in ../shared/data, read in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TUMORSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
# The paper texts sit beside the data (../shared/seeds), so a moved data folder moves them too;
# TUMORSEG_SHARED_SEEDS points elsewhere when they do not.
SHARED_SEEDS = Path(os.environ.get("TUMORSEG_SHARED_SEEDS", SHARED_DATA.parent / "seeds"))


@pytest.fixture(autouse=True, scope="session")
def _private_recovery_folder(tmp_path_factory):
    """Auto-save snapshots of the tests go to a folder of their own, never the user's."""
    folder = tmp_path_factory.mktemp("recovery")
    old = os.environ.get("TUMORSEG_RECOVERY_DIR")
    os.environ["TUMORSEG_RECOVERY_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("TUMORSEG_RECOVERY_DIR", None)
    else:
        os.environ["TUMORSEG_RECOVERY_DIR"] = old


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread: on a 2-core CI box OpenMP spinning makes tiny models ~10x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True, scope="session")
def _fp32_unless_asked():
    """Precision "auto" means fp32 in the tests, whatever the CPU (napari_tumorseg.precision):
    results do not depend on the machine; bf16 tests ask for it. TUMORSEG_CPU_BF16=1 in the
    environment runs the suite the way a bf16 CPU would."""
    old = os.environ.get("TUMORSEG_CPU_BF16")
    os.environ.setdefault("TUMORSEG_CPU_BF16", "0")
    yield
    if old is None:
        os.environ.pop("TUMORSEG_CPU_BF16", None)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA} (set TUMORSEG_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_seeds() -> Path:
    if not SHARED_SEEDS.is_dir():
        pytest.fail(f"paper texts not found at {SHARED_SEEDS} (set TUMORSEG_SHARED_DATA or TUMORSEG_SHARED_SEEDS)")
    return SHARED_SEEDS


@pytest.fixture(scope="session")
def pydicom_test_files() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("MR_small.dcm")).parent
