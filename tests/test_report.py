"""Figures, image grids, the HTML report and `enrich report`, on synthetic results tables and a
tiny real workspace (PneumoniaMNIST images from data/)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from enrich.cli import main
from enrich.errors import EnrichError
from enrich.evaluate import stats as S
from enrich.report import grid, plots
from enrich.report.html import write_report

DATA = Path(__file__).resolve().parents[1] / "data" / "pneumoniamnist" / "pneumoniamnist.npz"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- builders


def make_results(
    *,
    n_train: int = 48,
    sizes: tuple[int, ...] = (12, 24, 36),
    inits: int = 2,
    models: int = 5,
    enrich_from: int | None = 24,
    random_from: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """A results table with a known answer: each strategy is indistinguishable from the
    full set from its `*_from` size on (the same values as the full set) and clearly worse
    before it (every value below every full value)."""
    rng = np.random.default_rng(seed)
    full = 0.95 + rng.uniform(0, 0.01, inits * models)
    rows = []

    def add(strategy: str, size: int, values: np.ndarray, n_inits: int) -> None:
        for k, v in enumerate(values):
            rows.append(
                {
                    "strategy": strategy,
                    "init": k % n_inits,
                    "size": size,
                    "fraction": size / n_train,
                    "model": k // n_inits,
                    "seed": 1000 + len(rows),
                    "metric": "auc",
                    "value": float(v),
                    "status": "ok",
                    "error": "",
                    "wall_s": 0.5,
                }
            )

    add(S.FULL, n_train, full, 1)
    for name, start in (("enrich", enrich_from), ("random", random_from)):
        for j, size in enumerate(sizes):
            if start is not None and size >= start:
                values = rng.permutation(full)
            else:
                values = (
                    0.70 + 0.05 * j + (name == "enrich") * 0.1 + rng.uniform(0, 0.01, len(full))
                )
            add(name, size, values, inits)
    return pd.DataFrame(rows)


def make_run(
    tmp_path: Path,
    results: pd.DataFrame | None = None,
    *,
    meta: dict | None = None,
    subsets: pd.DataFrame | None = None,
    name: str = "run",
) -> Path:
    run = tmp_path / name
    run.mkdir(parents=True, exist_ok=True)
    (make_results() if results is None else results).to_csv(run / "results.csv", index=False)
    base_meta = {
        "task": "classification",
        "seconds_per_image": 3.0,
        "n_train": 48,
        "n_test": 10,
        "seed": 1234,
        "seeds": {"init": [11, 12]},
        "config": {"sizes": [12, 24, 36], "models": 5, "initializations": 2},
        "versions": {"enrich": "0.1.0", "torch": "2.13.0", "monai": "1.4"},
        "data_fingerprint": "fp-abc123",
    }
    (run / "meta.json").write_text(json.dumps({**base_meta, **(meta or {})}))
    if subsets is not None:
        subsets.to_parquet(run / "subsets.parquet", index=False)
    return run


def make_workspace(tmp_path: Path, *, leak: bool = False) -> tuple[Path, pd.DataFrame]:
    """A real workspace: 48 train + 10 test PneumoniaMNIST images, pixel embeddings, and one
    exact duplicate image so that a near-duplicate group exists (with `leak`, also a test
    image that is a copy of a training image)."""
    from enrich.embeddings import Embeddings
    from enrich.io import discover
    from enrich.workspace import Workspace

    d = np.load(DATA)
    train = d["train_images"][::100][:48].copy()
    train[47] = train[3]  # a duplicate
    test = d["test_images"][:10].copy()
    if leak:
        test[0] = train[5]
    src = tmp_path / "images"
    src.mkdir()
    np.savez(
        src / "tiny.npz",
        train_images=train,
        train_labels=d["train_labels"][::100][:48],
        test_images=test,
        test_labels=d["test_labels"][:10],
    )
    manifest = discover(src).manifest
    ws = Workspace.create(tmp_path / "ws")
    ws.write_manifest(manifest)
    pixels = {k: img.ravel() for k, img in _frames(manifest)}
    vectors = np.stack([pixels[i] for i in manifest["id"]]).astype(np.float32)
    vectors -= vectors.mean(axis=0)  # centred pixels: similarities are not all ~1
    vectors[manifest["id"] == "tiny.npz#train/47"] = vectors[manifest["id"] == "tiny.npz#train/3"]
    if leak:
        vectors[manifest["id"] == "tiny.npz#test/0"] = vectors[manifest["id"] == "tiny.npz#train/5"]
    ws.write_embeddings(Embeddings(manifest["id"].to_numpy(), vectors))
    return ws.path, ws.manifest()


def _frames(manifest: pd.DataFrame):
    from enrich.io import read_frames

    return list(read_frames(manifest))


def make_subsets(manifest: pd.DataFrame, *, sizes=(12, 24, 36), inits: int = 2) -> pd.DataFrame:
    """Per init: a shared 6-image seed, then each strategy's own order (ENRICH: from the
    end of the pool; random: a permutation)."""
    train = manifest.loc[manifest["split"] == "train", "id"].tolist()
    rows = []
    for init in range(inits):
        rng = np.random.default_rng(init)
        seed = list(rng.choice(train, 6, replace=False))
        rest = [i for i in train if i not in seed]
        orders = {"enrich": seed + rest[::-1], "random": seed + list(rng.permutation(rest))}
        for name, order in orders.items():
            for size in sizes:
                rows += [
                    {"strategy": name, "init": init, "size": size, "id": i} for i in order[:size]
                ]
    return pd.DataFrame(rows)


def _imgs(html: str) -> list[bytes]:
    """The decoded PNG payloads of every <img src="data:image/png;base64,...">."""
    srcs = re.findall(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return [base64.b64decode(s, validate=True) for s in srcs]


def _card(html: str, strategy: str) -> str:
    m = re.search(
        rf'<div class="card [^"]*" data-strategy="{strategy}">(.*?)</div>\s*\n\s*'
        r'(<div class="card|</div>)',
        html,
        re.S,
    )
    assert m, f"no headline card for {strategy}"
    return m.group(1)


# --------------------------------------------------------------------------- figures


def test_plot_performance_marks_equivalent_points_and_stars() -> None:
    table = S.check_results(make_results())
    fig = plots.plot_performance(table)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    red = [
        c
        for c in ax.collections
        if isinstance(c, PathCollection)
        and len(c.get_edgecolor())
        and tuple(c.get_edgecolor()[0][:3]) == (1.0, 0.0, 0.0)
    ]
    assert len(red) == 1
    # enrich at 24 and 36 (50%, 75%) are circled; nothing else.
    assert sorted(red[0].get_offsets()[:, 0].tolist()) == pytest.approx([50.0, 75.0], abs=1)
    stars = sorted(t.get_text() for t in ax.texts)
    expected = sorted(S.compare_to_baseline(table)["stars"])
    assert stars == expected and len(stars) == 3
    labels = ax.get_legend_handles_labels()[1]
    assert "Full training set" in labels and "ENRICH" in labels
    # On a given axes: draws there and returns its figure.
    fig2 = Figure()
    ax2 = fig2.add_subplot()
    assert plots.plot_performance(table, ax=ax2) is fig2


def test_plot_performance_shared_starting_set_is_one_grey_point() -> None:
    table = S.check_results(make_results())
    fig = plots.plot_performance(table, shared_sizes={12})
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "Shared starting set" in labels
    assert len(ax.texts) == 2  # stars only at 24 and 36
    # The legend sits below the axes (it hid points in the plot).
    assert ax.get_legend() is None
    assert "Stars: ENRICH vs Random" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_plot_performance_size_axis_is_logarithmic_and_ticked_at_the_sizes() -> None:
    # The paper's sizes: on a linear 0-100% axis 2%, 7% and 11% share a few pixels.
    sizes = (20, 70, 110, 220, 330, 440, 550, 660, 770, 880)
    table = S.check_results(make_results(n_train=1000, sizes=sizes, enrich_from=330))
    ax = plots.plot_performance(table).axes[0]
    assert ax.get_xscale() == "log"
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[:4] == ["2%", "7%", "11%", "22%"] and ticks[-1] == "100%"
    # Neighbouring ticks at least a factor 1.45 apart, so their labels never overlap.
    locs = np.array(ax.get_xticks())
    assert (locs[1:] / locs[:-1] >= 1.45 - 1e-9).all()
    # On screen, 2% and 7% are now as far apart as 22% and 77%.
    to_px = ax.transData.transform
    gap = lambda a, b: to_px((b, 0.9))[0] - to_px((a, 0.9))[0]  # noqa: E731
    assert gap(2, 7) == pytest.approx(gap(22, 77), rel=1e-6)


def test_plot_performance_without_full_or_baseline() -> None:
    t = make_results()
    t = S.check_results(t.loc[t["strategy"] == "enrich"])
    fig = plots.plot_performance(t)
    assert not [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    assert not fig.axes[0].texts


def test_plot_labeling_time_bars_are_the_computed_hours() -> None:
    table = S.check_results(make_results(n_train=48))
    fig = plots.plot_labeling_time(table, seconds_per_image=300.0)
    bars = [p.get_height() for p in fig.axes[0].patches]
    times = S.labeling_time(table, seconds_per_image=300.0)
    assert bars == pytest.approx([48 * 300 / 3600, *times["hours_needed"]])
    assert bars[1] == pytest.approx(24 * 300 / 3600)  # ENRICH: 24 of 48 images


def test_plot_pooled_shows_the_test() -> None:
    table = S.check_results(make_results())
    fig = plots.plot_pooled(table)
    p = S.pooled_comparison(table).tests.iloc[0]["p"]
    assert f"{p:.2g}" in fig.axes[0].get_title()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["ENRICH", "Random"]


def test_plot_redundancy_cdf_delegates_to_the_redundancy_module() -> None:
    m = {"a": np.linspace(0, 1, 50), "b": np.full(20, 0.9)}
    fig = Figure()
    out = plots.plot_redundancy_cdf(m, ax=fig.add_subplot())
    assert out is fig
    assert len(fig.axes[0].get_lines()) >= 2


def _smallest_text_px(fig: Figure, *, screen_px: float = 336.0) -> float:
    """The smallest text of `fig` in CSS pixels when shown `screen_px` wide (a 360-px phone
    less the page margins)."""
    from matplotlib.text import Text

    fig.draw_without_rendering()  # makes the tick labels
    sizes = [
        float(t.get_fontsize())
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip()
    ]
    width_pt = fig.get_figwidth() * 72.0
    return min(sizes) * screen_px / width_pt


def test_figures_are_readable_at_phone_width() -> None:
    table = S.check_results(make_results())
    figs = {
        "fig3": plots.plot_performance(table, shared_sizes={12}),
        "fig4": plots.plot_labeling_time(table, seconds_per_image=3.0),
        "fig5": plots.plot_pooled(table),
    }
    for name, fig in figs.items():
        assert fig.get_figwidth() <= plots.PHONE_WIDTH_IN, name
        assert _smallest_text_px(fig) >= 9.0, name


def test_figures_render_to_png() -> None:
    png = plots.figure_png(plots.plot_pooled(S.check_results(make_results())))
    assert png.startswith(PNG_MAGIC)


# --------------------------------------------------------------------------- grids


def test_image_grid_on_real_images() -> None:
    d = np.load(DATA)
    a = [d["train_images"][i] for i in range(5)]
    b = [d["train_images"][i] for i in range(100, 103)]
    fig = grid.picks_grid({"enrich": a, "random": b}, captions={"enrich": list("vwxyz")})
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 8
    first = fig.axes[0].images[0].get_array()
    img = a[0].astype(float)
    np.testing.assert_allclose(first, (img - img.min()) / (img.max() - img.min()))
    # At most 4 images across (phone width): ENRICH's 5 wrap onto a second line; each
    # group's label is above its first image.
    assert fig.axes[0].get_title(loc="left") == "ENRICH"
    assert fig.axes[5].get_title(loc="left") == "Random"
    assert fig.axes[4].get_title(loc="left") == ""
    lefts = sorted({round(ax.get_position().x0, 6) for ax in fig.axes})
    assert len(lefts) == 4 and fig.axes[4].get_position().x0 == pytest.approx(lefts[0], abs=1e-5)
    assert fig.axes[4].get_position().y0 < fig.axes[0].get_position().y0
    assert fig.get_figwidth() <= plots.PHONE_WIDTH_IN
    assert _smallest_text_px(fig) >= 9.0
    assert fig.axes[0].get_xlabel() == "v"
    fig = grid.duplicates_grid([a[:2], b[:3]])
    assert sum(bool(ax.images) for ax in fig.axes) == 5
    with pytest.raises(EnrichError, match="no images"):
        grid.image_grid([("x", [])])
    with pytest.raises(EnrichError, match="cannot show"):
        grid.image_grid([("x", [np.zeros((2, 2, 2, 2))])])


def test_captions_carry_the_id_split_and_patient() -> None:
    cap = grid.caption("pneumoniamnist.npz#train/1234", split="test", patient=7, extra="sim 1")
    lines = cap.split("\n")
    assert "".join(lines[:-2]) == "pneumoniamnist.npz#train/1234"  # the id, wrapped
    assert all(len(line) <= 14 for line in lines[:-2])
    assert lines[-2:] == ["test · pt 7", "sim 1"]
    assert grid.caption("a.png", split=None, patient=float("nan")) == "a.png"
    assert grid.wrap_id("x" * 30) == "x" * 14 + "\n" + "x" * 14 + "\nxx"


def test_leaks_are_near_duplicates_across_split_or_patients() -> None:
    from enrich.redundancy import redundancy

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 32))
    X[1] = X[0]  # train / test, same patient: a split leak
    X[3] = X[2]  # both train, patients p2 and p3: a patient leak
    X[5] = X[4]  # both train, same patient: fine
    X[7] = X[6]  # val / test, different patients: both
    X[9] = X[8] * 1.0001  # test / test, different patients: a patient leak
    ids = [f"im{k}" for k in range(40)]
    split = ["train"] * 40
    split[1] = split[7] = split[8] = split[9] = "test"
    split[6] = "val"
    patient = [f"p{k}" for k in range(40)]
    patient[1], patient[5] = "p0", "p4"
    info = pd.DataFrame({"id": ids, "split": split, "patient_id": patient})
    found = grid.leaks(redundancy(X), ids, X, info)
    pairs = {(r["id_a"], r["id_b"]): r["crosses"] for r in S.records(found.pairs)}
    assert pairs == {
        ("im0", "im1"): "split",
        ("im2", "im3"): "patients",
        ("im6", "im7"): "split, patients",
        ("im8", "im9"): "patients",
    }
    assert found.n_split == 2 and found.n_patients == 3 and found.threshold == 0.95
    assert (found.pairs["similarity"] > 0.999).all()
    # Without patient ids, only the split is checked; the list is capped, the counts are not.
    few = grid.leaks(redundancy(X), ids, X, info.drop(columns="patient_id"), limit=1)
    assert few.n_split == 2 and few.n_patients == 0 and len(few.pairs) == 1
    with pytest.raises(EnrichError, match="one per image"):
        grid.leaks(redundancy(X), ids[:3], X, info)


def test_leaks_straddling_two_representative_groups_are_found() -> None:
    """A~B and B~C above the threshold, A and C not: with groups around representatives
    (the default) B joins A's group and C starts its own, so the pair (B, C) straddles two
    groups; it must still be found."""
    from enrich.redundancy import redundancy

    t = np.arccos(0.97)
    X = np.array([[1.0, 0.0], [np.cos(t), np.sin(t)], [np.cos(2 * t), np.sin(2 * t)]])
    X = np.vstack([X, [[0.0, 1.0], [-1.0, 0.0]]])  # two loners
    res = redundancy(X)
    assert res.group_method == "representative" and res.group[1] != res.group[2]
    ids = ["A", "B", "C", "D", "E"]
    info = pd.DataFrame({"id": ids, "split": ["train", "train", "test", "train", "test"]})
    found = grid.leaks(res, ids, X, info)
    assert {(r["id_a"], r["id_b"]) for r in S.records(found.pairs)} == {("B", "C")}
    assert found.n_split == 1


def test_first_picks_are_beyond_the_shared_seed() -> None:
    sub = pd.DataFrame(
        {
            "strategy": ["enrich"] * 5 + ["random"] * 5 + ["enrich"] * 2 + ["random"] * 2,
            "init": [0] * 10 + [1] * 4,
            "size": [5] * 10 + [2] * 4,
            "id": ["s1", "s2", "e1", "e2", "x", "s1", "s2", "r1", "x", "r2", "a", "b", "c", "d"],
        }
    )
    assert grid.first_picks(sub, k=8) == {"enrich": ["e1", "e2"], "random": ["r1", "r2"]}
    assert grid.first_picks(sub, k=1) == {"enrich": ["e1"], "random": ["r1"]}
    assert grid.first_picks(sub, init=1) == {"enrich": ["a", "b"], "random": ["c", "d"]}
    assert grid.first_picks(sub.loc[sub["strategy"] == "enrich"]) == {}
    # With the benchmark's rank column, selection order wins over row order.
    ranked = sub.assign(rank=sub.groupby(["strategy", "init", "size"]).cumcount())
    shuffled = ranked.iloc[::-1]
    assert grid.first_picks(shuffled) == {"enrich": ["e1", "e2"], "random": ["r1", "r2"]}


def test_duplicate_examples_groups_and_pairs() -> None:
    from enrich.redundancy import redundancy

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 16))
    X[1] = X[0] + 1e-4  # a group of three
    X[2] = X[0] - 1e-4
    X[11] = X[10] + 1e-3  # a pair
    ids = [f"img{i}" for i in range(30)]
    groups = grid.duplicate_examples(redundancy(X), ids)
    assert [sorted(i for i, _ in g) for g in groups[:2]] == [
        ["img0", "img1", "img2"],
        ["img10", "img11"],
    ]
    assert all(s > 0.99 for g in groups[:2] for _, s in g)
    # Then the closest remaining pairs, without repeating an image.
    assert len(groups) == 4 and [len(g) for g in groups[2:]] == [2, 2]
    shown = [i for g in groups for i, _ in g]
    assert len(shown) == len(set(shown))
    assert groups[2][0][1] >= groups[3][0][1]
    # Exact duplicates rank before a looser, larger group; with vectors, a group's members
    # follow their similarity to its first image.
    X[20] = X[21] = X[22] = X[23] = X[5]  # four identical images
    res = redundancy(X)
    ranked = grid.duplicate_examples(res, ids, vectors=X, n_groups=2)
    assert sorted(i for i, _ in ranked[0]) == ["img20", "img21", "img22", "img23", "img5"]
    assert ranked[1][0][0] in {"img0", "img1", "img2"}
    with pytest.raises(EnrichError, match="vectors"):
        grid.duplicate_examples(res, ids, vectors=X[:3])
    # No group at the threshold: fall back to the most similar pairs.
    pairs = grid.duplicate_examples(
        redundancy(rng.normal(size=(20, 16)), group_threshold=1.0), ids[:20], n_groups=3
    )
    assert len(pairs) == 3 and all(len(p) == 2 for p in pairs)
    with pytest.raises(EnrichError, match="one per image"):
        grid.duplicate_examples(redundancy(X), ids[:5])


def test_load_images_reads_thumbnails(tmp_path: Path) -> None:
    _, manifest = make_workspace(tmp_path)
    ids = ["tiny.npz#train/5", "tiny.npz#test/2", "not-there"]
    out = grid.load_images(manifest, ids)
    assert sorted(out) == sorted(ids[:2])
    d = np.load(DATA)
    np.testing.assert_allclose(out["tiny.npz#train/5"] * 255, d["train_images"][500], atol=1e-3)
    small = grid.load_images(manifest, ids[:1], max_side=10)
    assert small["tiny.npz#train/5"].shape == (10, 10)  # 28 px, stride 3


# --------------------------------------------------------------------------- the report


def test_report_from_results_only(tmp_path: Path) -> None:
    results = make_results()
    results.loc[len(results)] = {
        **results.iloc[-1].to_dict(),
        "status": "failed",
        "value": float("nan"),
        "error": "NaN loss at epoch 3 <b>",
        "model": 99,
    }
    run = make_run(tmp_path, results)
    path = write_report(run)
    assert path == run / "report.html"
    html = path.read_text(encoding="utf-8")
    # Headline: ENRICH 50% (24 of 48), random needs everything; hours saved at 3 s/image.
    enrich = _card(html, "enrich")
    assert '<div class="big headline-number">50%</div>' in enrich
    assert "24 of 48 images" in enrich
    assert "Saves about <b>1.2 minutes</b>" in enrich  # (48 - 24) × 3 s = 72 s
    assert '<div class="big headline-number">100%</div>' in _card(html, "random")
    assert 'id="pooled-card"' in html
    # The card gives the scores behind the claim; 10 models per point: no power caution.
    full = results.loc[(results["strategy"] == S.FULL) & (results["status"] == "ok"), "value"]
    at24 = results.loc[(results["strategy"] == "enrich") & (results["size"] == 24), "value"]
    assert f"Mean AUC {at24.mean():.4f} vs {full.mean():.4f} with all images" in enrich
    assert 'id="power-note"' not in html
    assert "On this data, the first 50% matched labeling everything." in html
    # Figures 3, 5, 4 are embedded, decodable PNGs; nothing is fetched from outside.
    imgs = _imgs(html)
    assert len(imgs) == 3 and all(b.startswith(PNG_MAGIC) for b in imgs)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html and "<script" not in html and "@import" not in html
    # Failed model counted and shown, its message escaped.
    assert "1 of 71 model runs failed" in html  # 10 full + 2 × 3 × 10 + 1
    assert "NaN loss at epoch 3 &lt;b&gt;" in html
    # The per-size table: stars and the "same as full" column.
    assert html.count("yes (p &gt; 0.05)") == 2
    # Provenance.
    for text in ("fp-abc123", "2.13.0", "1234", "Protocol configuration", "results.csv sha256"):
        assert text in html
    # Written atomically: nothing else left in the folder.
    assert sorted(p.name for p in run.iterdir()) == ["meta.json", "report.html", "results.csv"]


def test_report_with_workspace_has_coverage_redundancy_and_grids(tmp_path: Path) -> None:
    ws, manifest = make_workspace(tmp_path)
    run_dir = ws / "runs" / "quick"
    subsets = make_subsets(manifest)
    run = make_run(ws / "runs", subsets=subsets, name="quick", meta={"workspace": str(ws)})
    assert run == run_dir
    out = tmp_path / "elsewhere" / "r.html"
    path = write_report(run, out=out)
    assert path == out and out.is_file()
    html = out.read_text(encoding="utf-8")
    imgs = _imgs(html)
    assert len(imgs) == 6  # Figs. 3, 5, 4, 1, the picks grid and the duplicates grid
    assert all(b.startswith(PNG_MAGIC) for b in imgs)
    for section in ('id="fig-redundancy"', 'id="grids"', 'id="coverage"'):
        assert section in html
    assert "to their representative image" in html  # the default group method is named
    # Coverage: per class plus all classes; the full training set column has 48 images.
    cov = S.coverage(subsets, manifest, train_ids=manifest.loc[manifest["split"] == "train", "id"])
    assert "Class 0" in html and "Class 1" in html and "All classes" in html
    n_class1_at_12 = cov.loc[
        (cov["strategy"] == "enrich") & (cov["size"] == 12) & (cov["class"] == "1"), "images"
    ].iloc[0]
    assert n_class1_at_12 > 0
    assert "<td>48</td>" in html
    # Without meta.json's workspace, the run folder's grandparent is found; --no-images works.
    meta = json.loads((run / "meta.json").read_text())
    del meta["workspace"]
    (run / "meta.json").write_text(json.dumps(meta))
    html2 = write_report(run, images=False).read_text(encoding="utf-8")
    assert 'id="fig-redundancy"' in html2 and 'id="grids"' not in html2


def test_report_grids_show_ids_and_the_leakage_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from enrich.report import html as H

    ws, manifest = make_workspace(tmp_path, leak=True)
    run = make_run(
        ws / "runs", subsets=make_subsets(manifest), name="quick", meta={"workspace": str(ws)}
    )
    drawn: list[Figure] = []
    real = H._png
    monkeypatch.setattr(H, "_png", lambda fig: (drawn.append(fig), real(fig))[1])
    html = write_report(run).read_text(encoding="utf-8")
    # Every figure of the page, the grids and Fig. 1 included, reads at phone width.
    assert len(drawn) == 6
    for fig in drawn:
        assert fig.get_figwidth() <= plots.PHONE_WIDTH_IN + 1e-9
        assert _smallest_text_px(fig) >= 9.0
    # Every grid image has its id, split (and, without patient ids, no patient) under it.
    grids = drawn[-2:]
    for fig in grids:
        for ax in (a for a in fig.axes if a.images):
            cap = ax.get_xlabel()
            assert cap.split("\n")[0].startswith("tiny.npz")
            assert "\ntrain" in cap or "\ntest" in cap
    dup = [ax.get_xlabel().replace("\n", "") for ax in grids[1].axes if ax.images]
    assert any(c.startswith("tiny.npz#train/3train") for c in dup)
    assert any(c.startswith("tiny.npz#train/47train") for c in dup)
    # The ids again as text, to copy.
    assert 'id="duplicate-ids"' in html and 'id="picks-ids"' in html
    assert '<td class="l id">tiny.npz#train/47</td>' in html
    # The leakage table: the test image that copies a training image, with both ids.
    section = html[html.index('<section id="leakage">') :]
    section = section[: section.index("</section>")]
    assert "1 near-duplicate pair (similarity ≥ 0.95) crosses the train/test split" in section
    assert re.search(
        r'<td class="l id">tiny.npz#train/5</td><td class="l id">tiny.npz#test/0</td>'
        r"<td>1.000</td><td class=\"l\">train / test</td>",
        section,
    )


def test_report_reads_the_benchmark_outputs_without_a_workspace(tmp_path: Path) -> None:
    # split.parquet (the benchmark's own view: id, split, label, patient_id, clip_id) gives
    # coverage without a workspace; meta.json's metric and warnings are used.
    ids = [f"im{k}" for k in range(48)]
    split = pd.DataFrame(
        {
            "id": [*ids, "t0", "t1"],
            "split": ["train"] * 48 + ["test"] * 2,
            "label": [str(k % 2) for k in range(50)],
            "patient_id": [f"p{k // 4}" for k in range(50)],
            "clip_id": [f"c{k // 2}" for k in range(50)],
        }
    )
    rows = []
    spread = ids[::3] + [i for i in ids if i not in ids[::3]]
    orders = {"enrich": [ids[::2] + ids[1::2]] * 2, "random": [ids, spread]}
    for name, per_init in orders.items():
        for size in (12, 24, 36):
            rows += [
                {"strategy": name, "init": i, "size": size, "id": x, "rank": r}
                for i in range(2)
                for r, x in enumerate(per_init[i][:size])
            ]
    subsets = pd.DataFrame(rows)
    results = make_results()
    other = results.assign(metric="jaccard", value=results["value"] - 0.5)
    run = make_run(
        tmp_path,
        pd.concat([results, other], ignore_index=True),
        subsets=subsets,
        meta={"metric": "jaccard", "warnings": ["size 0.9 is larger than the pool: skipped"]},
    )
    split.to_parquet(run / "split.parquet", index=False)
    html = write_report(run).read_text(encoding="utf-8")
    full = results.loc[results["strategy"] == S.FULL, "value"]
    assert "metric: mean Jaccard" in html
    assert f"test mean Jaccard {full.mean() - 0.5:.4f}" in html
    assert f"{full.mean():.4f}" not in html
    assert 'id="run-warnings"' in html and "size 0.9 is larger than the pool" in html
    assert 'id="coverage"' in html
    # ENRICH's first 12 (im0, im2, ..., im22): patients k // 4 = 0..5 -> 6, clips k // 2 ->
    # 12; random's first 12: im0..im11 (3 patients, 6 clips) in init 0, im0, im3, ..., im33
    # (9 patients, 12 clips) in init 1: a mean count, shown with its range. The pool: 12
    # patients, 24 clips.
    table = html[html.index("All classes") :]
    assert re.search(r"<td>ENRICH</td><td class=\"l\">patients</td><td>6</td>", table)
    assert re.search(r"<td>ENRICH</td><td class=\"l\">clips</td><td>12</td>", table)
    assert re.search(
        r"<td>Random</td><td class=\"l\">patients, mean \(range\)</td><td>6.0 \(3–9\)</td>", table
    )
    assert re.search(
        r"<td>Random</td><td class=\"l\">clips, mean \(range\)</td>"
        r"<td>9.0 \(6–12\)</td>.*?>24</td>",
        table,
    )


@pytest.mark.slow
def test_report_notes_when_underpowered_or_incomplete(tmp_path: Path) -> None:
    # 2 models per point: nothing can be significant; the page must say so.
    run = make_run(tmp_path, make_results(inits=1, models=2), name="tiny")
    html = write_report(run).read_text(encoding="utf-8")
    assert 'id="power-note"' in html and "too few models" in html
    assert "cannot give p ≤ 0.05" in html
    # 4 vs 4 models can reach p < 0.05, but only for large differences: a softer caution.
    run = make_run(tmp_path, make_results(inits=2, models=2), name="four")
    html = write_report(run).read_text(encoding="utf-8")
    assert 'id="power-note"' in html and "only 4 models" in html
    # The claim stands (4 vs 4 can reach p = 0.029), but the next step words it as weakly
    # as the caution box does.
    assert '<div class="big headline-number">50%</div>' in _card(html, "enrich")
    step = re.search(r'<p id="next-step">(.*?)</p>', html, re.S)
    assert step and "matched" not in step.group(1)
    assert "no detectable difference" in step.group(1) and "caution below" in step.group(1)
    # No full-set models: still a report, with a note and without Fig. 4.
    t = make_results()
    run = make_run(tmp_path, t.loc[t["strategy"] != S.FULL], name="nofull")
    html = write_report(run).read_text(encoding="utf-8")
    assert "No successful full-set models" in html
    assert "Cannot tell: no models trained on the full training set" in _card(html, "enrich")
    assert "No smaller subset we tried" not in html
    assert 'id="next-step"' not in html
    assert 'id="fig-time"' not in html and 'id="fig-performance"' in html
    # One strategy only: no baseline comparison, no Fig. 5.
    run = make_run(tmp_path, t.loc[t["strategy"] != "random"], name="one")
    html = write_report(run).read_text(encoding="utf-8")
    assert 'id="fig-pooled"' not in html and 'id="fig-performance"' in html
    # meta.json missing: defaults (3 s per image), and a note.
    run = make_run(tmp_path, t, name="nometa")
    (run / "meta.json").unlink()
    html = write_report(run).read_text(encoding="utf-8")
    assert "meta.json is missing" in html and "At 3 s per image" not in html  # the figure is a PNG
    assert 'id="fig-time"' in html


def test_two_models_per_point_make_no_claim(tmp_path: Path) -> None:
    # The run: 2 models per point, 2 full-set models; ENRICH's values from 24 images
    # on are exactly the full set's (p = 1), but 2 vs 2 can never give p < 0.05 (min 0.33).
    config = {"sizes": [12, 24, 36], "models": 2, "initializations": 1}
    run = make_run(tmp_path, make_results(inits=1, models=2), meta={"config": config})
    html = write_report(run).read_text(encoding="utf-8")
    for claim in ("matched", "Saves", "saves", "yes (p &gt; 0.05)", "headline-number", "l same"):
        assert claim not in html, claim
    assert 'id="fig-time"' not in html  # no hours saved to draw
    for name in ("enrich", "random"):
        card = _card(html, name)
        assert "Cannot tell yet" in card and "smallest possible p is 0.33" in card
        assert "Need ≥ 4 models per point" in card
    # The per-size table says so neutrally; next step and caution box agree with the cards.
    assert html.count("cannot tell with 2 vs 2 models; need ≥ 4 each") == 6
    assert 'class="l cannot"' in html
    step = re.search(r'<p id="next-step">(.*?)</p>', html, re.S)
    assert step and "cannot tell yet" in step.group(1) and "--set models=4" in step.group(1)
    note = re.search(r'<div class="callout" id="power-note">(.*?)</div>', html, re.S)
    assert note and "at every size this run cannot tell" in note.group(1)
    assert "before trusting the headline" not in note.group(1)
    # Fig. 3 circles nothing in red.
    fig = plots.plot_performance(S.check_results(make_results(inits=1, models=2)))
    assert not [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]


def test_one_model_against_one_is_no_pooled_result(tmp_path: Path) -> None:
    t = make_results(inits=1, models=1, sizes=(24,))
    config = {"sizes": [24], "models": 1, "initializations": 1}
    html = write_report(make_run(tmp_path, t, meta={"config": config})).read_text("utf-8")
    m = re.search(r'<div class="card" id="pooled-card">(.*?)\n  </div>', html, re.S)
    assert m, "no pooled card"
    card = m.group(1)
    assert "p = " not in card and 'class="big"' not in card
    assert "Cannot tell yet" in card and "1 model vs 1" in card


def test_incomplete_run_has_a_banner_with_the_missing_count(tmp_path: Path) -> None:
    # Planned (meta.json): 2 strategies × 3 sizes × 2 inits × 5 models + 10 full = 70.
    # Interrupted: the last 9 of random's 36-image models and 3 full-set models never ran.
    t = make_results()
    gone = t.index[(t["strategy"] == "random") & (t["size"] == 36)][:9].tolist()
    gone += t.index[t["strategy"] == S.FULL][:3].tolist()
    run = make_run(tmp_path, t.drop(index=gone))
    html = write_report(run).read_text(encoding="utf-8")
    banner = re.search(r'<div class="callout incomplete" id="incomplete">(.*?)</div>', html, re.S)
    assert banner, "no incomplete-run banner"
    assert "12 of 70 planned models are missing" in banner.group(1)
    assert "Random 9, Full training set 3" in banner.group(1)
    failed = html[html.index('<section id="failed">') :]
    failed = failed[: failed.index("</section>")]
    assert "all 58 model runs finished" not in failed and "None: all" not in failed
    assert "12 of 70 planned models have not run" in failed
    # The complete run has no banner.
    html = write_report(make_run(tmp_path, name="complete")).read_text(encoding="utf-8")
    assert 'id="incomplete"' not in html and "None: all 70 model runs finished" in html


@pytest.mark.slow
def test_incomplete_banner_from_a_real_benchmark_run(tmp_path: Path) -> None:
    # meta.json as the benchmark writes it: a complete run has no banner; cutting the last
    # rows off results.csv (an interrupted run) shows exactly that many missing.
    from enrich.evaluate.data import BenchmarkData
    from enrich.evaluate.protocol import run_benchmark

    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    x = rng.normal(size=(60, 16, 16)) + y[:, None, None]
    data = BenchmarkData.from_arrays(x, labels=y, vectors=rng.normal(size=(60, 8)))
    cfg = {
        "initializations": 1,
        "models": 1,
        "initial": 10,
        "sizes": [20, 30],
        "model": {"input_size": 16, "block_inplanes": [4, 8, 8, 8], "layers": [1, 1, 1, 1]},
        "train": {"epochs": 1, "patience": None, "batch_size": 16},
        "split": {"test_fraction": 0.3},
    }
    run = run_benchmark(data, cfg, tmp_path / "run", progress=False, report=False).out
    html = write_report(run).read_text(encoding="utf-8")
    assert 'id="incomplete"' not in html and "None: all 5 model runs finished" in html
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    (run / "results.csv").write_text("".join(lines[:-2]))
    html = write_report(run).read_text(encoding="utf-8")
    assert "2 of 5 planned models are missing" in html


def test_segmentation_report(tmp_path: Path) -> None:
    t = make_results().assign(metric="jaccard")
    run = make_run(tmp_path, t, meta={"task": "segmentation", "seconds_per_image": 300.0})
    html = write_report(run).read_text(encoding="utf-8")
    assert "segmentation · metric: mean Jaccard" in html
    # (48 - 24) images × 5 min = 2 hours.
    assert "Saves about <b>2.0 hours</b> of expert labeling at 300 s per image" in html


def test_report_refuses_runs_without_results(tmp_path: Path) -> None:
    t = make_results()
    t["status"] = "failed"
    run = make_run(tmp_path, t, name="allfailed")
    with pytest.raises(EnrichError, match="no successful models"):
        write_report(run)
    with pytest.raises(EnrichError, match="no such run folder"):
        write_report(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "meta.json").write_text("{")
    (tmp_path / "bad" / "results.csv").write_text(make_results().to_csv(index=False))
    with pytest.raises(EnrichError, match="not valid JSON"):
        write_report(tmp_path / "bad")


# --------------------------------------------------------------------------- the CLI


def test_cli_report_prints_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path)
    assert main(["report", str(run)]) == 0
    out, _ = capsys.readouterr()
    assert out.strip() == str(run / "report.html")
    assert (run / "report.html").is_file()
    target = tmp_path / "x.html"
    assert main(["report", str(run), "--out", str(target), "--rule", "first", "--no-images"]) == 0
    assert capsys.readouterr().out.strip() == str(target)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such run folder"),
        ("notarun", "is not a benchmark run: results.csv not found"),
        ("empty", "is empty"),
        ("header", "has no rows"),
        ("columns", "lacks column(s) metric, value"),
        ("alpha", "--alpha"),
        ("metric", "metric 'dice' is not in the results"),
    ],
)
def test_cli_report_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    run = tmp_path / "run"
    extra: list[str] = []
    if setup != "missing":
        run.mkdir()
    if setup == "empty":
        (run / "results.csv").write_text("")
    elif setup == "header":
        (run / "results.csv").write_text(",".join(S.RESULT_COLUMNS) + "\n")
    elif setup == "columns":
        (run / "results.csv").write_text("strategy,size\nenrich,3\n")
    elif setup in ("alpha", "metric"):
        make_run(tmp_path)
        extra = ["--alpha", "2"] if setup == "alpha" else ["--metric", "dice"]
    assert main(["report", str(run), *extra]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message in err and "Traceback" not in err
