"""Training on several sources at once (issue 15): BraTS 2013 as DeepMedic ships it (z-scored,
FLAIR + T1c, OTMultiClass 0-4, its own train / validation folders) beside raw BraTS
2017 / 2021 / 2023 cases, each edition with its own file naming and label convention."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tumorseg.brats import convention_from_names, patient_key
from napari_tumorseg.channels import shared_channels
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.training.datasets import (
    CaseData,
    CaseRef,
    DataSource,
    case_channels,
    data_paths,
    open_source,
    prepare_case,
    split_refs,
)
from napari_tumorseg.training.engine import DoneEvent, StartEvent, TrainConfig, run_to_end
from napari_tumorseg.training.preprocessing import Preprocessing

DEEPMEDIC, MULTI = "brats2013_deepmedic", "brats_multi_year"


@pytest.fixture(scope="module")
def mixed(shared_data):
    return open_source([shared_data / DEEPMEDIC, shared_data / MULTI])


def test_one_data_source_lists_both_folders(shared_data, mixed):
    ids = sorted(r.case_id for r in mixed.refs)
    assert ids == sorted(["brats_2013_pat0003_1", "brats_2013_pat0004_1", "brats_2013_pat0005_1",
                          "brats_2013_pat0006_1", "BraTS-GLI-00000-000", "BraTS2021_00002",
                          "BraTS2021_00006", "Brats17_2013_27_1"])
    assert mixed.kind == "nifti" and "2 data sources" in mixed.description
    assert {r.source for r in mixed.refs} == {str(shared_data / DEEPMEDIC), str(shared_data / MULTI)}
    # A list, repeated --data, "A,B" or "A; B" (the Train dock's field): the same folders.
    a, b = shared_data / DEEPMEDIC, shared_data / MULTI
    for given in ([a, b], [str(a), str(b)], f"{a},{b}", f"{a}; {b}"):
        assert data_paths(given) == [a, b]
    assert data_paths(str(a)) == [a] and data_paths([(np.zeros((4, 4)), np.zeros((4, 4)))]) is None
    assert len(open_source(str(a)).refs) == 4  # one --data works as before
    with pytest.raises(TumorSegError, match="given twice"):
        open_source([a, str(a)])


def test_channels_are_matched_by_name_across_sources(shared_data, mixed):
    from napari_tumorseg.io.nifti import read_nifti
    from napari_tumorseg.io.orientation import to_display

    by_id = {r.case_id: r for r in mixed.refs}
    # Each edition's names: 2013 Flair/T1c_subtrMeanDivStd, 2021 flair/t1/t1ce/t2,
    # 2023 t1c/t1n/t2f/t2w, 2017 flair/t1/t1ce/t2, stored in file-name order.
    assert by_id["BraTS-GLI-00000-000"].channel_names[0].endswith("t1c")
    assert by_id["BraTS2021_00002"].channel_names[0].endswith("flair")
    names = [r.channel_names for r in mixed.refs]
    assert shared_channels(names) == ("FLAIR", "T1c")  # what every case holds, in one order
    assert shared_channels([by_id["BraTS2021_00002"].channel_names,
                            by_id["BraTS-GLI-00000-000"].channel_names]) == ("FLAIR", "T1", "T1c", "T2")
    assert shared_channels([by_id["BraTS2021_00002"].channel_names] * 2) is None  # already one order
    files = {"BraTS-GLI-00000-000": ("-t2f", "-t1c"), "BraTS2021_00002": ("_flair", "_t1ce"),
             "Brats17_2013_27_1": ("_flair", "_t1ce"),
             "brats_2013_pat0003_1": ("Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd")}
    for case_id, (flair, t1c) in files.items():
        ref = by_id[case_id]
        data = ref.load()
        image = case_channels(data, ("FLAIR", "T1c"), ref.name)
        assert image.shape[0] == 2
        folder = shared_data / (DEEPMEDIC + "/validation" if case_id.startswith("brats_2013") else MULTI) / case_id
        for channel, suffix in enumerate((flair, t1c)):
            path = next(p for p in folder.iterdir() if p.name.split(".")[0].endswith(suffix))
            assert np.array_equal(image[channel], to_display(read_nifti(path)).data.astype(np.float32)), (case_id, suffix)
    with pytest.raises(TumorSegError, match="no T1 scan"):
        case_channels(by_id["brats_2013_pat0003_1"].load(), ("FLAIR", "T1"), "pat0003")


def test_the_split_is_by_patient_across_sources(mixed):
    for seed in range(6):
        train, val, warnings = split_refs(mixed, 0.25, seed)
        tk = {patient_key(r.case_id) for r in train}
        vk = {patient_key(r.case_id) for r in val}
        assert not tk & vk and len(train) + len(val) == 8
        # DeepMedic's own folders are kept: 0005, 0006 train, 0003, 0004 validation.
        assert {"brats_2013_pat0005_1", "brats_2013_pat0006_1"} <= {r.case_id for r in train}
        assert {"brats_2013_pat0003_1", "brats_2013_pat0004_1"} <= {r.case_id for r in val}
        assert len([r for r in val if r.source.endswith(MULTI)]) == 1  # 25 % of the 4 others
        # 2013 patients reappear renumbered in 2017-2023 releases: said, not hidden.
        assert any("one patient may be on both sides" in w for w in warnings)
    assert split_refs(mixed, 0.25, 3)[1] == split_refs(mixed, 0.25, 3)[1]


def _ref(case_id: str, split=None) -> CaseRef:
    return CaseRef(case_id, case_id, lambda: CaseData(np.zeros((1, 1, 4, 4)), np.zeros((1, 4, 4))), split)


def test_one_patient_under_two_editions_names_is_one_unit():
    # BraTS 2023 glioma ids are 2021's; 2012's HG numbers are 2013's patients.
    assert patient_key("BraTS-GLI-00002-000") == patient_key("BraTS2021_00002")
    assert patient_key("brats2012_hg0015") == patient_key("BRATS_HG0015") == patient_key("brats_2013_pat0015_1")
    assert patient_key("TCGA_CS_4941") == "TCGA_CS_4941"
    refs = [_ref(f"BraTS2021_{i:05d}") for i in range(6)] + [_ref(f"BraTS-GLI-{i:05d}-000") for i in range(6)]
    for seed in range(10):
        train, val, _ = split_refs(DataSource("nifti", refs, ""), 0.3, seed)
        assert {patient_key(r.case_id) for r in train}.isdisjoint({patient_key(r.case_id) for r in val})
        assert len(val) == 4 and len(train) == 8  # 2 of 6 patients, both names each
    # A patient a source's own folders put in training takes its other names with it.
    fixed = [_ref("brats_2013_pat0015_1", "train"), _ref("brats_2013_pat0003_1", "val"), _ref("BRATS_HG0015"),
             _ref("BRATS_HG0003"), _ref("BRATS_HG0009"), _ref("BRATS_HG0010")]
    train, val, _ = split_refs(DataSource("nifti", fixed, ""), 0.5, 0)
    ids = {r.case_id for r in train}
    assert {"brats_2013_pat0015_1", "BRATS_HG0015"} <= ids and "BRATS_HG0003" in {r.case_id for r in val}


def test_label_conventions_are_unified(shared_data, mixed):
    by_id = {r.case_id: r for r in mixed.refs}
    assert {cid: r.label_convention for cid, r in by_id.items() if not cid.startswith("brats_2013")} == {
        "BraTS-GLI-00000-000": "brats2023", "BraTS2021_00002": "brats", "BraTS2021_00006": "brats",
        "Brats17_2013_27_1": "brats"}
    assert by_id["brats_2013_pat0003_1"].label_convention == "brats"  # OTMultiClass 0-4
    assert convention_from_names("brats2012_hg0015", "BRATS_HG0015_truth.nii.gz") == "brats2012"
    common = {"channel_names": ("FLAIR", "T1c"), "class_names": ("WT", "TC", "ET")}
    binary = Preprocessing.for_model(2, 32, 2, "binary", normalize="robust", **common)
    regions = Preprocessing.for_model(2, 32, 2, "regions", normalize="robust", region_convention="brats", **common)
    for case_id in ("BraTS-GLI-00000-000", "BraTS2021_00002"):
        ref = by_id[case_id]
        b = prepare_case(ref, binary)
        assert np.array_equal(b.target[0] > 0.5, b.labels > 0)  # whole tumour: every label > 0
        r = prepare_case(ref, regions, per_case_convention=True)
        enhancing = 3 if case_id.startswith("BraTS-GLI") else 4
        assert set(np.unique(r.labels).tolist()) >= {0, 1, 2, enhancing}
        assert np.array_equal(r.target[2] > 0.5, r.labels == enhancing), case_id  # ET
        assert np.array_equal(r.target[0] > 0.5, r.labels > 0)  # WT
        assert np.array_equal(r.target[1] > 0.5, np.isin(r.labels, (1, enhancing)))  # TC


def test_one_epoch_trains_on_the_mix(shared_data, tmp_path):
    from napari_tumorseg.models.checkpoint import load_checkpoint

    cfg = TrainConfig(model="unet", data=[str(shared_data / DEEPMEDIC), str(shared_data / MULTI)],
                      out_dir=str(tmp_path), epochs=1, batch_size=8, size=64, tiny=True,
                      val_fraction=0.25, max_train_items=3, max_val_items=2, empty_slice_fraction=0.0,
                      recipe="cpu", threads=1, hd95=False, seed=1)
    events = run_to_end(cfg)
    assert isinstance(events[-1], DoneEvent), events[-1]
    start = next(e for e in events if isinstance(e, StartEvent))
    train_keys = {patient_key(c) for c in start.train_cases}
    val_keys = {patient_key(c) for c in start.val_cases}
    assert train_keys.isdisjoint(val_keys)
    both = set(start.train_cases) | set(start.val_cases)
    assert any(c.startswith("brats_2013") for c in both) and any(not c.startswith("brats_2013") for c in both)
    _, ck = load_checkpoint(tmp_path / "last.pt")
    prep = ck["preprocessing"]
    assert prep["channel_names"] == ["FLAIR", "T1c"] and ck["in_channels"] == 2
    assert prep["normalize"] == "robust" and ck["config"]["width"] == 4
    assert ck["extra"]["train_config"]["data"] == cfg.data


def test_cli_takes_several_data_folders(shared_data, tmp_path):
    from napari_tumorseg.cli import build_parser
    from napari_tumorseg.cli.train import _config

    a, b = str(shared_data / DEEPMEDIC), str(shared_data / MULTI)
    base = ["train", "--model", "unet", "--out", str(tmp_path)]
    cfg = _config(build_parser().parse_args(base + ["--data", a, "--data", b]))
    assert cfg.data == [a, b] and cfg.to_dict()["data"] == [a, b]
    cfg = _config(build_parser().parse_args(base + ["--data", f"{a},{b}"]))
    assert data_paths(cfg.data) == [shared_data / DEEPMEDIC, shared_data / MULTI]
    cfg = _config(build_parser().parse_args(base + ["--data", a]))
    assert cfg.data == a


LGG = "lgg_kaggle3m"


def test_lgg_joins_a_regions_run_by_sequence_with_its_whole_tumour_only(shared_data):
    """LGG kaggle_3m's TIFFs name no sequence: source_channels names them (T1, FLAIR, T1c), so
    they fill a four-sequence run's channels by name (T2 a zero channel); their masks mark
    the lesion as one object, so the region target is the whole tumour with core and
    enhancing unknown (NaN), not absent."""
    from napari_tumorseg.training.datasets import name_channels

    src = open_source(shared_data / LGG)
    assert all(r.lesion_only for r in src.refs)
    name_channels(src, {str(shared_data / LGG): ["T1", "FLAIR", "T1c"]})
    ref = src.refs[0]
    raw = ref.load()
    assert raw.channel_names == ["T1", "FLAIR", "T1c"]
    prep = Preprocessing(dims=2, channels=4, channel_names=["FLAIR", "T1", "T1c", "T2"],
                         missing_channels="zeros", target="regions", region_convention="brats")
    case = prepare_case(ref, prep, per_case_convention=True)
    assert case.image.shape[0] == 4 and not case.image[3].any()  # no T2: zeros
    # FLAIR is the stored second channel: the run's first channel follows it
    flair_raw = raw.image[1].astype(np.float32)
    z = int(np.argmax(raw.labels.reshape(raw.labels.shape[0], -1).sum(1)))
    assert np.corrcoef(case.image[0, z].ravel(), flair_raw[z].ravel())[0, 1] > 0.9
    assert np.corrcoef(case.image[0, z].ravel(), raw.image[0, z].astype(np.float32).ravel())[0, 1] < 0.9
    wt, tc, et = case.target
    assert np.array_equal(wt > 0.5, case.labels > 0) and wt.any()
    assert np.isnan(tc).all() and np.isnan(et).all()
    with pytest.raises(TumorSegError, match="source_channels names"):
        bad = open_source(shared_data / LGG)
        name_channels(bad, {str(shared_data / LGG): ["FLAIR", "T1c"]})
        bad.refs[0].load()
    with pytest.raises(TumorSegError, match="not one of the data folders"):
        name_channels(open_source(shared_data / LGG), {str(shared_data / DEEPMEDIC): ["FLAIR"]})


def test_val_cases_pins_the_validation_patients(shared_data, mixed):
    # DeepMedic's own validation folder (pat0003, pat0004) stays validation; the named case joins it
    folders = {"brats_2013_pat0003_1", "brats_2013_pat0004_1"}
    train, val, _ = split_refs(mixed, 0.0, 0, val_cases=["BraTS2021_00002"])
    assert {r.case_id for r in val} == folders | {"BraTS2021_00002"}
    assert "BraTS2021_00002" not in {r.case_id for r in train} and len(train) == 5
    # a case its source folder puts in training moves to validation when named
    train, val, _ = split_refs(mixed, 0.0, 0, val_cases=["brats_2013_pat0005_1"])
    assert {r.case_id for r in val} == folders | {"brats_2013_pat0005_1"}
    assert "brats_2013_pat0005_1" not in {r.case_id for r in train}
    with pytest.raises(TumorSegError, match="not a case of the data"):
        split_refs(mixed, 0.0, 0, val_cases=["nobody"])


def test_a_regions_run_on_one_object_masks_alone_is_refused(shared_data, tmp_path):
    cfg = TrainConfig(model="unet", data=shared_data / LGG, out_dir=str(tmp_path), output="regions",
                      epochs=1, size=64, tiny=True, max_train_items=1, hd95=False, threads=1)
    from napari_tumorseg.training.engine import train

    evs = list(train(cfg))
    assert "every mask given marks one lesion" in evs[-1].message


def test_a_click_run_mixes_brats_volumes_and_lgg_slices_and_validates_on_lgg(shared_data, tmp_path):
    """The volume click model's second stage in miniature: BraTS 2012 (all four sequences,
    regions) beside LGG (three named sequences, whole tumour only), validated on an LGG
    patient: the loss, the clicks and the validation Dice use its whole tumour alone."""
    from napari_tumorseg.training.engine import train

    cfg = TrainConfig(model="unet", data=[shared_data / "brats2012_hg0015", shared_data / LGG],
                      out_dir=str(tmp_path), output="regions", interactive=True, click_iterations=1,
                      channels=["FLAIR", "T1", "T1c", "T2"],
                      source_channels={str(shared_data / LGG): ["T1", "FLAIR", "T1c"]},
                      val_cases=["TCGA_CS_4941"], epochs=1, size=64, tiny=True, max_train_items=2,
                      hd95=False, threads=1, batch_size=8, recipe="paper", augmentation=False)
    evs = list(train(cfg))
    done = evs[-1]
    assert isinstance(done, DoneEvent), done
    start = next(e for e in evs if isinstance(e, StartEvent))
    assert start.val_cases == ["TCGA_CS_4941"]
    metrics = [e for e in evs if type(e).__name__ == "EpochEvent"][-1].metrics
    assert np.isfinite(metrics["dice"]) and np.isfinite(metrics["dice_WT"])
    assert "dice_TC" not in metrics and "dice_ET" not in metrics  # not labelled there
