"""The evaluation protocol: splits, subsets, metrics, faults, resume (issue 4, sections 1, 6, 7)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from enrich.errors import EnrichError
from enrich.evaluate.config import load_config, protocol_config
from enrich.evaluate.data import BenchmarkData, encode_labels
from enrich.evaluate.metrics import auc, jaccard_counts, macro_auc, mean_jaccard
from enrich.evaluate.protocol import plan_sizes, run_benchmark
from enrich.evaluate.results import RESULT_COLUMNS, ResultsLog
from enrich.evaluate.splits import split_manifest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

TINY = {
    "initializations": 2,
    "models": 1,
    "initial": 8,
    "sizes": [8, 16],
    "model": {"input_size": 16, "block_inplanes": [4, 8, 8, 8], "layers": [1, 1, 1, 1]},
    "train": {"epochs": 1, "patience": None, "batch_size": 16},
    "split": {"test_fraction": 0.3},
}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_data(
    n: int = 60, *, seed: int = 0, n_patients: int | None = None, **cols
) -> BenchmarkData:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 16, 16)).astype(np.float32)
    x[y == 1, 4:12, 4:12] += 2.0  # a learnable blob
    vec = x.reshape(n, -1)[:, ::8] + rng.normal(scale=0.1, size=(n, 32))
    if n_patients:
        cols.setdefault("patient_id", [f"p{i % n_patients}" for i in range(n)])
    return BenchmarkData.from_arrays(x, labels=y, vectors=vec, **cols)


def read_rows(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv")


# ---------------------------------------------------------------------------- metrics


def _auc_pairs(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    gt = (pos[:, None] > neg[None, :]).sum()
    eq = (pos[:, None] == neg[None, :]).sum()
    return (gt + 0.5 * eq) / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_pairwise_definition_and_mann_whitney(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # rounding makes ties
    a = auc(y, s)
    assert a == pytest.approx(_auc_pairs(y, s))
    u = mannwhitneyu(s[y == 1], s[y == 0]).statistic
    assert a == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()))


def test_macro_auc_multiclass_is_mean_one_vs_rest():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 90)
    p = rng.random((90, 3))
    want = np.mean([_auc_pairs((y == k).astype(int), p[:, k]) for k in range(3)])
    assert macro_auc(y, p) == pytest.approx(want)
    assert macro_auc(y % 2, p[:, :2]) == pytest.approx(_auc_pairs(y % 2, p[:, 1]))


def test_auc_one_class_is_an_error():
    with pytest.raises(EnrichError, match="positive"):
        auc(np.zeros(5), np.arange(5.0))


def test_mean_jaccard_by_hand():
    target = np.array([[[0, 1, 1], [2, 2, 0]]])
    pred = np.array([[[0, 1, 0], [2, 1, 0]]])
    c = jaccard_counts(pred, target, 3)
    # class 1: inter 1, union |{(0,1),(0,2),(1,1)}| = 3; class 2: inter 1, union 2
    assert c[1].tolist() == [1, 3] and c[2].tolist() == [1, 2]
    assert mean_jaccard(c) == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_encode_labels_numeric_and_text():
    codes, names = encode_labels([10, 2, None, 2])
    assert names == ["2", "10"] and codes.tolist() == [1, 0, -1, 0]


# ---------------------------------------------------------------------------- splits


@pytest.mark.parametrize("seed", range(8))
def test_patient_split_never_leaks(seed):
    rng = np.random.default_rng(seed)
    n = 300
    m = pd.DataFrame(
        {
            "id": [f"i{k}" for k in range(n)],
            "patient_id": [f"p{v}" for v in rng.integers(0, 40, n)],
            "clip_id": [f"c{v}" for v in rng.integers(0, 120, n)],
        }
    )
    labels = rng.integers(0, 2, n)
    s = split_manifest(m, seed=seed, test_fraction=0.25, validation_fraction=0.1, labels=labels)
    assert s.group_column == "patient_id"
    sides = pd.DataFrame({"p": m["patient_id"], "a": s.assignment}).groupby("p")["a"].nunique()
    assert (sides == 1).all()
    frac = (s.assignment == "test").mean()
    assert 0.15 < frac < 0.4
    assert {"train", "val", "test"} == set(s.assignment.tolist())
    # seeded: the same seed gives the same split, another seed another one
    again = split_manifest(m, seed=seed, test_fraction=0.25, validation_fraction=0.1, labels=labels)
    assert (again.assignment == s.assignment).all()


def test_split_falls_back_to_clip_then_subject():
    m = pd.DataFrame({"id": list("abcdef"), "clip_id": list("xxyyzz")})
    assert split_manifest(m, seed=0, test_fraction=0.3).group_column == "clip_id"
    m2 = pd.DataFrame(
        {"id": list("abcdef"), "patient_id": [None] * 6, "subject_id": list("xxyyzz")}
    )
    s = split_manifest(m2, seed=0, test_fraction=0.3)
    assert s.group_column == "subject_id"
    assert (
        pd.DataFrame({"g": m2["subject_id"], "a": s.assignment}).groupby("g")["a"].nunique() == 1
    ).all()


def test_given_split_column_is_used_and_checked():
    m = pd.DataFrame(
        {
            "id": list("abcdefgh"),
            "split": ["train", "train", "val", "test", "TRAIN", "test", None, "validation"],
            "patient_id": list("ppqrstuv"),
        }
    )
    s = split_manifest(m, seed=0)
    assert s.assignment.tolist() == [
        "train",
        "train",
        "val",
        "test",
        "train",
        "test",
        "drop",
        "val",
    ]
    assert split_manifest(m, seed=0, val="train").assignment[2] == "train"
    leaky = m.assign(patient_id=list("aabcdaef"))  # patient a: train and test
    with pytest.raises(EnrichError, match="both sides"):
        split_manifest(leaky, seed=0)
    with pytest.raises(EnrichError, match="expected train, val or test"):
        split_manifest(m.assign(split=["train", "bogus"] * 4), seed=0)


def test_protocol_split_keeps_patients_apart(tmp_path):
    data = tiny_data(80, n_patients=16)
    run_benchmark(
        data,
        {**TINY, "sizes": [8], "initializations": 1, "full": False},
        tmp_path,
        progress=False,
        report=False,
    )
    sp = pd.read_parquet(tmp_path / "split.parquet")
    assert (sp.groupby("patient_id")["split"].nunique() == 1).all()
    subsets = pd.read_parquet(tmp_path / "subsets.parquet")
    assert set(subsets["id"]) <= set(sp.loc[sp["split"] == "train", "id"])


# ---------------------------------------------------------------------------- config and sizes


def test_plan_sizes_skips_with_reasons():
    n_init, sizes, warns = plan_sizes((0.1, 0.05, 30, 1.0, 500, 0.5), 0.1, 100)
    assert n_init == 10 and sizes == [10, 30, 50]
    assert any("larger than the training pool" in w for w in warns)
    assert any("smaller than the initial" in w for w in warns)
    assert any("full" in w for w in warns)


def test_packaged_configs_load():
    quick, paper = load_config("quick"), load_config("paper")
    assert (quick.initializations, quick.models) == (2, 2)
    assert (paper.initializations, paper.models) == (3, 10)
    assert paper.model.input_size == 80 and paper.task == "classification"


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"task": "detect"}, "task"),
        ({"sizes": [1.5]}, "fraction"),
        ({"sizes": []}, "sizes"),
        ({"models": 0}, "models"),
        ({"strategies": ["full"]}, "reference"),
        ({"bogus": 1}, "unknown key"),
        ({"train": {"epoch": 3}}, "unknown key"),
        ({"split": {"val": "maybe"}}, "split.val"),
        ({"label_map": ["a"]}, "label_map"),
        ({"label_map": {0: None}}, "label_map"),
        ({"task": "segmentation", "label_map": {0: "a"}}, "label_map"),
    ],
)
def test_bad_config_values(bad, match):
    with pytest.raises(EnrichError, match=match):
        protocol_config(bad)


# ---------------------------------------------------------------------------- the protocol


def test_same_seed_subset_across_strategies_and_prefixes(tmp_path):
    data = tiny_data(90)
    cfg = {**TINY, "initializations": 3, "sizes": [8, 16, 30], "full": False}
    run_benchmark(data, cfg, tmp_path, progress=False, report=False)
    sub = pd.read_parquet(tmp_path / "subsets.parquet")
    seeds = {}
    for i in range(3):
        per = {
            s: set(sub[(sub.strategy == s) & (sub.init == i) & (sub["rank"] < 8)]["id"])
            for s in ("enrich", "random")
        }
        assert per["enrich"] == per["random"] and len(per["enrich"]) == 8
        seeds[i] = frozenset(per["enrich"])
        for s in ("enrich", "random"):
            sets = [
                set(sub[(sub.strategy == s) & (sub.init == i) & (sub["size"] == k)]["id"])
                for k in (8, 16, 30)
            ]
            assert [len(x) for x in sets] == [8, 16, 30]
            assert sets[0] <= sets[1] <= sets[2]  # growing subsets are prefixes of one order
    assert len(set(seeds.values())) == 3  # each initialization has its own seed subset
    rows = read_rows(tmp_path)
    assert len(rows) == 2 * 3 * 3
    # model m of init i has the same training seed in every strategy and size (paired design)
    assert (rows.groupby(["init", "model"])["seed"].nunique() == 1).all()
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["n_train"] + meta["n_test"] == 90 and meta["seconds_per_image"] == 3.0
    assert meta["fingerprint"].startswith("sha256:")
    assert {"initial", "selector", "model", "split"} <= set(meta["seeds"])


def test_selection_sees_only_embeddings(tmp_path, monkeypatch):
    import enrich.select as sel_mod

    seen = []
    real = sel_mod.SELECTORS["enrich"]

    class Spy(real):  # type: ignore[misc, valid-type]
        def fit(self, X, **kw):
            seen.append((np.asarray(X).copy(), sorted(kw)))
            return super().fit(X, **kw)

    monkeypatch.setitem(sel_mod.SELECTORS, "enrich", Spy)
    data = tiny_data(60)
    run_benchmark(
        data, {**TINY, "initializations": 1, "full": False}, tmp_path, progress=False, report=False
    )
    ((X, kwargs),) = seen
    sp = pd.read_parquet(tmp_path / "split.parquet")
    pool = sp.loc[sp["split"] == "train", "id"].astype(int).to_numpy()
    assert kwargs == ["initial"]
    np.testing.assert_allclose(X, data.vectors[pool])


def test_results_schema_and_full_reference(tmp_path):
    run = run_benchmark(tiny_data(60), TINY, tmp_path, progress=False, report=False)
    rows = read_rows(tmp_path)
    assert list(rows.columns[: len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS)
    assert run.n_ok == len(rows) == 2 * 2 * 2 + 2  # strategies × inits × sizes + full per init
    full = rows[rows.strategy == "full"]
    assert (full["fraction"] == 1.0).all() and full["size"].nunique() == 1
    assert rows["value"].between(0, 1).all() and (rows["metric"] == "auc").all()
    assert (rows["status"] == "ok").all() and (rows["wall_s"] > 0).all()


def test_three_classes_use_one_vs_rest_auc(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 16, 16)).astype(np.float32) + y[:, None, None]
    data = BenchmarkData.from_arrays(
        x, labels=[f"c{k}" for k in y], vectors=rng.normal(size=(n, 8))
    )
    cfg = {**TINY, "initializations": 1, "sizes": [8], "split": {"test_fraction": 0.4}}
    run = run_benchmark(data, cfg, tmp_path, progress=False, report=False)
    assert run.n_ok == 3
    assert json.loads((tmp_path / "meta.json").read_text())["classes"] == ["c0", "c1", "c2"]


def test_label_map_merges_classes_before_training(tmp_path):
    # Severity 0-3 as the manifest holds it ("2.0" strings), merged into >= 2 vs < 2.
    rng = np.random.default_rng(0)
    n = 60
    sev = np.arange(n) % 4
    x = rng.normal(size=(n, 16, 16)).astype(np.float32) + (sev >= 2)[:, None, None]
    labels = [f"{k:.1f}" for k in sev]
    data = BenchmarkData.from_arrays(x, labels=labels, vectors=rng.normal(size=(n, 8)))
    cfg = {**TINY, "initializations": 1, "sizes": [8], "split": {"test_fraction": 0.4}}
    cfg["label_map"] = {0: "<2", 1: "<2", 2: ">=2", 3: ">=2"}
    run_benchmark(data, cfg, tmp_path, progress=False, report=False)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["classes"] == ["<2", ">=2"]
    assert meta["config"]["label_map"] == {"0": "<2", "1": "<2", "2": ">=2", "3": ">=2"}


def test_label_map_unknown_label_names_it(tmp_path):
    data = tiny_data(40)  # labels 0 and 1
    cfg = {**TINY, "label_map": {0: "no"}}
    with pytest.raises(EnrichError, match=r"'1' \(20 image\(s\)\) not in label_map"):
        run_benchmark(data, cfg, tmp_path, progress=False, report=False)
    assert not (tmp_path / "results.csv").exists()


def test_empty_label_map_keeps_the_recorded_config_of_older_runs():
    # A run recorded before label_map existed must still resume: its identity has no such key.
    assert "label_map" not in protocol_config(TINY).to_dict()
    assert protocol_config(protocol_config(TINY).to_dict()) == protocol_config(TINY)


def test_size_larger_than_pool_is_skipped_with_a_warning(tmp_path):
    notes = []
    cfg = {**TINY, "sizes": [8, 10_000], "initializations": 1, "full": False}
    run_benchmark(tiny_data(40), cfg, tmp_path, progress=False, report=False, log=notes.append)
    assert any("larger than the training pool" in n for n in notes)
    assert set(read_rows(tmp_path)["size"]) == {8}
    assert any("larger" in w for w in json.loads((tmp_path / "meta.json").read_text())["warnings"])


def test_nan_loss_is_recorded_as_failed_and_the_run_continues(tmp_path, monkeypatch):
    from enrich.evaluate import tasks

    built = []
    real = tasks.MODELS["resnet"]

    class NanOut(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) * float("nan")

    def every_other_nan(cfg, n_classes, task):
        built.append(1)
        net = real(cfg, n_classes, task)
        return NanOut(net) if len(built) % 2 else net

    monkeypatch.setitem(tasks.MODELS, "resnet", every_other_nan)
    run = run_benchmark(tiny_data(60), TINY, tmp_path, progress=False, report=False)
    rows = read_rows(tmp_path)
    failed = rows[rows.status == "failed"]
    assert len(rows) == 10 and len(failed) == 5 and run.n_failed == 5
    assert failed["error"].str.contains("diverged: loss became nan").all()
    assert failed["value"].isna().all() and rows.loc[rows.status == "ok", "value"].notna().all()


def test_retry_failed_trains_failed_models_again(tmp_path, monkeypatch):
    from enrich.evaluate import tasks

    real = tasks.MODELS["resnet"]

    def all_nan(cfg, n_classes, task):
        net = real(cfg, n_classes, task)
        return torch.nn.Sequential(net, _Nan())

    cfg = {**TINY, "initializations": 1, "sizes": [8]}
    monkeypatch.setitem(tasks.MODELS, "resnet", all_nan)
    assert run_benchmark(tiny_data(40), cfg, tmp_path, progress=False, report=False).n_failed == 3
    monkeypatch.setitem(tasks.MODELS, "resnet", real)
    assert run_benchmark(tiny_data(40), cfg, tmp_path, progress=False, report=False).n_trained == 0
    again = run_benchmark(
        tiny_data(40), cfg, tmp_path, progress=False, report=False, retry_failed=True
    )
    rows = read_rows(tmp_path)
    assert again.n_trained == 3 and len(rows) == 3 and (rows.status == "ok").all()


class _Nan(torch.nn.Module):
    def forward(self, x):
        return x * float("nan")


def test_segmentation_tiny_run(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    x = rng.normal(size=(n, 16, 16)).astype(np.float32)
    masks = np.zeros((n, 16, 16), np.uint8)
    for k in range(n):
        r, c = rng.integers(2, 9, 2)
        masks[k, r : r + 6, c : c + 6] = 255  # 0/255 masks become 0/1
        x[k][masks[k] > 0] += 2.0
    data = BenchmarkData.from_arrays(
        x, vectors=x.reshape(n, -1) + 5, masks=masks, subject_id=[f"s{k // 2}" for k in range(n)]
    )
    cfg = {
        "task": "segmentation",
        "initializations": 1,
        "models": 1,
        "initial": 6,
        "sizes": [10],
        "model": {"input_size": 16, "channels": [4, 8], "strides": [2], "num_res_units": 0},
        "train": {"epochs": 1, "patience": 1, "batch_size": 8},
        "split": {"test_fraction": 0.25, "validation_fraction": 0.1},
    }
    run_benchmark(data, cfg, tmp_path, progress=False, report=False)
    rows = read_rows(tmp_path)
    assert (rows.status == "ok").all() and (rows.metric == "jaccard").all()
    assert rows["value"].between(0, 1).all() and len(rows) == 3
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["seconds_per_image"] == 300.0 and meta["split"]["group_column"] == "subject_id"


# ---------------------------------------------------------------------------- bad input


def _arrays(n=40, **kw):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 16, 16)), rng.normal(size=(n, 8)), kw


def test_missing_label_column_is_an_error(tmp_path):
    x, v, _ = _arrays()
    with pytest.raises(EnrichError, match="no labels: the manifest's 'label' column is missing"):
        run_benchmark(BenchmarkData.from_arrays(x, vectors=v), TINY, tmp_path, progress=False)


def test_all_labels_missing_is_an_error(tmp_path):
    x, v, _ = _arrays()
    data = BenchmarkData.from_arrays(x, vectors=v, labels=[None] * 40)
    with pytest.raises(EnrichError, match="column is empty"):
        run_benchmark(data, TINY, tmp_path, progress=False)


def test_single_class_is_an_error(tmp_path):
    x, v, _ = _arrays()
    data = BenchmarkData.from_arrays(x, vectors=v, labels=["normal"] * 40)
    with pytest.raises(EnrichError, match=r"'normal'.*at least two classes"):
        run_benchmark(data, TINY, tmp_path, progress=False)


def test_test_set_without_positives_is_an_error(tmp_path):
    x, v, _ = _arrays()
    labels = [0, 1] * 15 + [0] * 10
    split = ["train"] * 30 + ["test"] * 10
    data = BenchmarkData.from_arrays(x, vectors=v, labels=labels, split=split)
    with pytest.raises(EnrichError, match=r"test set .* has no image of class '1'"):
        run_benchmark(data, TINY, tmp_path, progress=False)


def test_segmentation_without_masks_is_an_error(tmp_path):
    x, v, _ = _arrays()
    data = BenchmarkData.from_arrays(x, vectors=v)
    with pytest.raises(EnrichError, match="mask"):
        run_benchmark(data, {**TINY, "task": "segmentation"}, tmp_path, progress=False)


def test_unlabelled_images_are_left_out_with_a_warning(tmp_path):
    x, v, _ = _arrays(50)
    labels = [0, 1] * 20 + [None] * 10
    notes = []
    run_benchmark(
        BenchmarkData.from_arrays(x, vectors=v, labels=labels),
        {**TINY, "initializations": 1, "full": False, "sizes": [8]},
        tmp_path,
        progress=False,
        report=False,
        log=notes.append,
    )
    assert any("10 image(s) without a label" in n for n in notes)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["n_train"] + meta["n_test"] == 40


def test_a_different_run_in_out_is_refused(tmp_path):
    data = tiny_data(40)
    cfg = {**TINY, "initializations": 1, "full": False, "sizes": [8]}
    run_benchmark(data, cfg, tmp_path, progress=False, report=False)
    with pytest.raises(EnrichError, match="different config"):
        run_benchmark(data, {**cfg, "seed": 1}, tmp_path, progress=False, report=False)


# ---------------------------------------------------------------------------- resume


def test_rerun_skips_done_rows_and_repairs_a_torn_line(tmp_path):
    data = tiny_data(60)
    first = run_benchmark(data, TINY, tmp_path, progress=False, report=False)
    csv_path = tmp_path / "results.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    # drop the last two rows, and leave half a row as a crash mid-write would
    csv_path.write_text("".join(lines[:-2]) + lines[-2][: len(lines[-2]) // 2])
    again = run_benchmark(data, TINY, tmp_path, progress=False, report=False)
    rows = read_rows(tmp_path)
    assert again.n_trained == 2 and len(rows) == first.n_ok
    assert not rows.duplicated(["strategy", "init", "size", "model"]).any()
    assert run_benchmark(data, TINY, tmp_path, progress=False, report=False).n_trained == 0


def test_results_log_append_is_durable(tmp_path):
    log = ResultsLog(tmp_path / "r.csv")
    log.append({"strategy": "enrich", "init": 0, "size": 5, "model": 1, "error": "a,\nb"})
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert rows[0]["error"] == "a, b" and ResultsLog(tmp_path / "r.csv").done() == {
        ("enrich", 0, 5, 1)
    }


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time, numpy as np, torch
    torch.set_num_threads(1)
    import enrich.evaluate.protocol as protocol
    from enrich.evaluate.data import BenchmarkData
    if sys.argv[2] == "slow":  # the first run is slowed down so that it is surely killed mid-way
        real = protocol._train_one
        def slow(*args, **kw):
            time.sleep(0.4)
            return real(*args, **kw)
        protocol._train_one = slow
    rng = np.random.default_rng(0)
    n = 60
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 16, 16)).astype(np.float32) + y[:, None, None]
    data = BenchmarkData.from_arrays(x, labels=y, vectors=rng.normal(size=(n, 8)))
    cfg = {"initializations": 2, "models": 2, "initial": 8, "sizes": [8, 16],
           "model": {"input_size": 16, "block_inplanes": [4, 8, 8, 8], "layers": [1, 1, 1, 1]},
           "train": {"epochs": 1, "patience": None, "batch_size": 8},
           "split": {"test_fraction": 0.3}}
    run = protocol.run_benchmark(data, cfg, sys.argv[1], progress=False, report=False)
    print("trained", run.n_trained, "ok", run.n_ok)
    """
)


@pytest.mark.slow
def test_kill_and_restart_resumes(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "run"
    total = 2 * 2 * 2 * 2 + 2 * 2  # strategies × inits × sizes × models + full
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), "slow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    csv_path = out / "results.csv"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if csv_path.exists() and len(csv_path.read_text().splitlines()) - 1 >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed = read_rows(out)
    assert 2 <= len(killed) < total
    done = subprocess.run(
        [sys.executable, str(script), str(out), "fast"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    rows = read_rows(out)
    assert len(rows) == total and (rows.status == "ok").all()
    assert not rows.duplicated(["strategy", "init", "size", "model"]).any()
    trained = int(done.stdout.split()[1])
    assert trained == total - len(killed)  # nothing finished before the kill was redone
    # rows that survived the kill are unchanged
    pd.testing.assert_frame_equal(rows.iloc[: len(killed)].reset_index(drop=True), killed)


@pytest.mark.slow
def test_parallel_workers_give_the_same_rows(tmp_path):
    data = tiny_data(60)
    cfg = {**TINY, "initializations": 1}
    run_benchmark(data, cfg, tmp_path / "serial", progress=False, report=False, threads=1)
    par = run_benchmark(
        data, cfg, tmp_path / "par", workers=2, progress=False, report=False, threads=1
    )
    assert par.n_ok == 5
    key = ["strategy", "init", "size", "model"]
    a = read_rows(tmp_path / "serial").sort_values(key).reset_index(drop=True)
    b = read_rows(tmp_path / "par").sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[[*key, "seed"]], b[[*key, "seed"]])
    np.testing.assert_allclose(a["value"], b["value"], atol=1e-6)
    assert not list((tmp_path / "par").glob(".cache-*"))
