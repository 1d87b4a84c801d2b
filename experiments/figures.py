"""Figures and tables of docs/results.md, rebuilt only from the committed tables in docs/results/.

``build_all()`` draws every figure (PNG beside docs/results.md) and rewrites every generated
table block of docs/results.md, i.e. the text between ``<!-- table:NAME -->`` and
``<!-- /table:NAME -->``. ``tables()`` returns those blocks; ``experiments/check_results.py``
compares them with the doc, so the doc's numbers always match the committed results.

Inputs (all under ``docs/results/``):

- ``redundancy/max_similarity.csv.gz``: dataset, max_similarity (one row per image);
- ``<study>/results.csv`` and ``<study>/meta.json`` for the benchmark studies.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BENCHMARKS",
    "DOC",
    "RESULTS",
    "ablation_results",
    "build_all",
    "doc_blocks",
    "figures",
    "fill_doc",
    "load_results",
    "redundancy_table",
    "replicate_results",
    "tables",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
DOC = ROOT / "docs" / "results.md"
#: Benchmark studies with their own results.csv (the ablation is drawn with its parent).
BENCHMARKS = ("pneumonia", "hc18", "cifar")
#: Issue-11 studies: every label-free strategy side by side (screening, 3 x 3 models) and the
#: power runs (ENRICH, random and the screening's strongest alternative, 3 x 10). Each gets the
#: Holm-corrected comparison with random, label efficiency and subset diversity as well.
STRATEGY_STUDIES = (
    "pneumonia_coldstart",
    "pneumonia_coldstart_power",
    "covid_blues_pixels",
    "covid_blues_pixels_power",
    "covid_blues",
    "covid_blues_power",
)
#: Embedding ablations: doc name -> (the ENRICH-only study, the β-VAE study whose random and
#: full models it reuses, the strategy name its ENRICH rows get).
ABLATIONS = {
    "ablation": ("pneumonia_pixels", "pneumonia", "enrich_pixels"),
    "hc18_ablation": ("hc18_pixels", "hc18", "enrich_pixels"),
    "cifar_ablation": ("cifar_pixels", "cifar", "enrich_pixels"),
    # ENRICH on the calibrated-decoder β-VAE (the first β-VAE's code had collapsed)
    "gaussian_ablation": ("pneumonia_betavae2", "pneumonia", "enrich_betavae_gaussian"),
    "hc18_gaussian_ablation": ("hc18_betavae2", "hc18", "enrich_betavae_gaussian"),
    "cifar_gaussian_ablation": ("cifar_betavae2", "cifar", "enrich_betavae_gaussian"),
}
#: Replicates: doc name -> studies with the same protocol and different seeds, pooled.
REPLICATES = {
    "pneumonia_all": ("pneumonia", "pneumonia_seed1"),
    "hc18_all": ("hc18", "hc18_seed1"),
    "cifar_all": ("cifar", "cifar_seed1"),
}
_BLOCK = re.compile(r"(<!-- table:([\w.-]+) -->\n)(.*?)(<!-- /table:\2 -->)", re.S)

# The paper's Fig. 1 statements, for the side-by-side table (Results, "Image redundancy").
PAPER_REDUNDANCY = {
    "PneumoniaMNIST": "OCT: roughly half > 0.8",
    "HC18 fetal head US": "(ECHO-F-SEG: not reported)",
    "Echo clip (120 frames)": "ECHO-F: majority > 0.9",
    "CIFAR-10 airplane/truck": "STL10: close to 60% < 0.4",
}


EMBEDDER_NAMES = {"betavae": "β-VAE", "pixels": "pixels-PCA"}


# ----------------------------------------------------------------------------- loading


def load_results(study: str) -> pd.DataFrame | None:
    """The committed, checked results table of a study, or None when it has not run."""
    from enrich.evaluate.stats import read_results

    path = RESULTS / study / "results.csv"
    if not path.exists():
        return None
    table = read_results(path)
    return table if len(table) else None


def _meta(study: str) -> dict[str, Any]:
    path = RESULTS / study / "meta.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def ablation_results(name: str = "ablation") -> pd.DataFrame | None:
    """e.g. pneumonia (β-VAE ENRICH, random, full) + pneumonia_pixels (ENRICH on pixels).

    The ablation run's ``enrich`` rows are renamed (``enrich_pixels``, ...); the parent's
    β-VAE rows become ``enrich_betavae``. Only (init, model) pairs present in the ablation
    run are kept for the two ENRICH variants and random, so all three compare the same seeds.
    """
    import pandas as pd

    study, parent, label = ABLATIONS[name]
    pix, main = load_results(study), load_results(parent)
    if pix is None or main is None:
        return None
    pix = pix.loc[pix["strategy"] == "enrich"].assign(strategy=label)
    pairs = set(zip(pix["init"], pix["model"], strict=True))
    keep = [(i, m) in pairs for i, m in zip(main["init"], main["model"], strict=True)]
    main = main.loc[keep].copy()
    main.loc[main["strategy"] == "enrich", "strategy"] = "enrich_betavae"
    return pd.concat([main, pix], ignore_index=True)


def replicate_results(name: str) -> pd.DataFrame | None:
    """The results of a study and its replicates (same protocol, other seeds), pooled.

    Initializations are renumbered so that they stay distinct across runs. When a seed
    also redraws the split (HC18: the pool has 696 instead of 699 images), the same planned
    fraction is a slightly different count; each replicate's sizes are then mapped, in
    order, onto the first run's sizes and fractions (and its full set onto the first run's).
    Returns None unless at least two of the runs have results.
    """
    import pandas as pd

    parts = []
    offset = 0
    ref: pd.DataFrame | None = None
    for study in REPLICATES[name]:
        t = load_results(study)
        if t is None:
            continue
        t = t.copy()
        t["init"] = t["init"] + offset
        offset = int(t["init"].max()) + 1
        if ref is None:
            ref = t
        else:
            t = _align_sizes(t, ref, study)
        parts.append(t)
    return pd.concat(parts, ignore_index=True) if len(parts) >= 2 else None


def _align_sizes(t: pd.DataFrame, ref: pd.DataFrame, study: str) -> pd.DataFrame:
    """Map the subset sizes of `t` onto those of `ref`, by rank (same planned fractions)."""
    sizes = sorted(set(t.loc[t["strategy"] != "full", "size"]))
    ref_sizes = sorted(set(ref.loc[ref["strategy"] != "full", "size"]))
    if sizes == ref_sizes:
        return t
    if len(sizes) != len(ref_sizes):
        raise ValueError(f"{study}: {len(sizes)} sizes, its first run has {len(ref_sizes)}")
    frac = ref.groupby("size")["fraction"].first()
    mapping = dict(zip(sizes, ref_sizes, strict=True))
    full = t["strategy"] == "full"
    if full.any():
        mapping[int(t.loc[full, "size"].iloc[0])] = int(
            ref.loc[ref["strategy"] == "full", "size"].iloc[0]
        )
    t["size"] = t["size"].map(lambda v: mapping.get(int(v), int(v))).astype(int)
    t["fraction"] = t["size"].map(frac).fillna(t["fraction"])
    return t


# ----------------------------------------------------------------------------- formatting


def _md(df: pd.DataFrame) -> str:
    """A GitHub markdown table (no index), cells as given (already strings)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _pct(x: float, digits: int = 0) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.{digits}f}%"


# ----------------------------------------------------------------------------- tables


def redundancy_table() -> str | None:
    """Fig. 1 numbers per embedder and dataset, computed from ``max_similarity.csv.gz``."""
    import numpy as np
    import pandas as pd

    path = RESULTS / "redundancy" / "max_similarity.csv.gz"
    if not path.exists():
        return None
    t = pd.read_csv(path)
    rows = []
    for (embedder, name), g in t.groupby(["embedder", "dataset"], sort=False):
        m = g["max_similarity"].to_numpy(np.float64)
        rows.append(
            {
                "embedding": EMBEDDER_NAMES.get(str(embedder), str(embedder)),
                "dataset": name,
                "images": f"{len(m):,}",
                "median max sim.": f"{np.median(m):.3f}",
                "> 0.95": _pct(float((m > 0.95).mean()), 1),
                "> 0.9": _pct(float((m > 0.9).mean()), 1),
                "> 0.8": _pct(float((m > 0.8).mean()), 1),
                "< 0.4": _pct(float((m < 0.4).mean()), 1),
                "paper (Fig. 1, β-VAE)": PAPER_REDUNDANCY.get(str(name), ""),
            }
        )
    return _md(pd.DataFrame(rows))


def clip_redundancy_table() -> str | None:
    """Fig. 1 on frames from clips: where each frame's nearest neighbour is, and how similar
    the nearest frame is within the clip, in the patient's other clips and in other patients
    (from ``redundancy/clips_*.json``, aggregates only)."""
    import pandas as pd

    paths = sorted((RESULTS / "redundancy").glob("clips_*.json"))
    if not paths:
        return None
    rows = []
    for path in paths:
        s = json.loads(path.read_text(encoding="utf-8"))
        near = s["nearest_neighbour_in"]
        key = path.stem[len("clips_") : -len(s["embedder"]) - 1]

        def above(part: str, t: str = "0.9", s: dict[str, Any] = s) -> str:
            return _pct(float(s[part]["fraction_above"][t]), 1)

        rows.append(
            {
                "set": key,
                "embedding": EMBEDDER_NAMES.get(s["embedder"], s["embedder"]),
                "frames / clips / patients": f"{s['n_images']:,} / {s['n_clips']} / "
                f"{s['n_patients']}",
                "nearest in same clip": _pct(float(near["same_clip"]), 2),
                "in patient's other clips": _pct(float(near["same_patient_other_clip"]), 2),
                "in other patients": _pct(float(near["other_patient"]), 2),
                "> 0.9 (any)": above("any"),
                "> 0.9 (same clip)": above("same_clip"),
                "> 0.9 (patient's other clips)": above("same_patient_other_clip"),
                "> 0.9 (other patients)": above("other_patient"),
                "median (other patients)": f"{s['other_patient']['quantiles']['0.5']:.3f}",
            }
        )
    return _md(pd.DataFrame(rows))


def per_size_table(table: pd.DataFrame, *, baseline: str = "random") -> str:
    """Fig. 3 numbers: mean ± SD per strategy and size, MWU vs baseline, vs full."""
    import pandas as pd

    from enrich.evaluate import stats as S

    desc = S.describe(table)
    cmp = S.compare_to_baseline(table, baseline=baseline)
    full = S.compare_to_full(table)
    names = [s for s in S.strategies(table, baseline=baseline) if s != S.FULL]
    sizes = sorted(set(desc.loc[desc["strategy"] != S.FULL, "size"]))
    rows = []
    for size in sizes:
        row: dict[str, str] = {}
        d = desc.loc[desc["size"] == size]
        frac = d["fraction"].mean()
        row["size"] = f"{int(size):,} ({_pct(frac, 1)})"
        for name in names:
            r = d.loc[d["strategy"] == name]
            f = full.loc[(full["strategy"] == name) & (full["size"] == size)]
            if len(r):
                mark = " ≈full" if len(f) and bool(f["indistinguishable"].iloc[0]) else ""
                sd = r["std"].iloc[0]
                sd_s = f"{sd:.3f}" if math.isfinite(sd) else "–"
                row[name] = f"{r['mean'].iloc[0]:.3f} ± {sd_s} (n={int(r['n'].iloc[0])}){mark}"
            else:
                row[name] = "–"
        for name in names:
            if name == baseline:
                continue
            c = cmp.loc[(cmp["strategy"] == name) & (cmp["size"] == size)]
            label = f"{name} vs {baseline}: p" if len(names) > 2 else f"p (vs {baseline})"
            row[label] = f"{_p(float(c['p'].iloc[0]))} {c['stars'].iloc[0]}" if len(c) else "–"
        rows.append(row)
    f = desc.loc[desc["strategy"] == S.FULL]
    if len(f):
        row = {"size": f"{int(f['size'].iloc[0]):,} (100%, full)"}
        for name in names:
            row[name] = ""
        first = names[0] if names else "full"
        row[first] = (
            f"full: {f['mean'].iloc[0]:.3f} ± {f['std'].iloc[0]:.3f} (n={int(f['n'].iloc[0])})"
        )
        rows.append(row)
    return _md(pd.DataFrame(rows).fillna(""))


def headline_table(table: pd.DataFrame, *, seconds_per_image: float) -> str:
    """Smallest full-equivalent subset per strategy and labeling hours saved (Fig. 4)."""
    import pandas as pd

    from enrich.evaluate import stats as S

    se = S.smallest_equivalent(table)
    lt = S.labeling_time(table, seconds_per_image=seconds_per_image)
    rows = []
    for r in S.records(se):
        name = r["strategy"]
        t = lt.loc[lt["strategy"] == name]
        first = r["first_fraction"]
        rows.append(
            {
                "strategy": name,
                "smallest ≈ full (sustained)": (
                    f"{int(r['size']):,} ({_pct(r['fraction'], 1)})"
                    if r["reached"]
                    else "not reached (needs 100%)"
                ),
                "first ≈ full": (
                    f"{int(r['first_size']):,} ({_pct(first, 1)})"
                    if isinstance(first, float) and math.isfinite(first)
                    else "none"
                ),
                "underpowered": "yes" if r["underpowered"] else "no",
                "labeling hours saved": (
                    f"{float(t['hours_saved'].iloc[0]):.2f}" if len(t) else "–"
                ),
            }
        )
    return _md(pd.DataFrame(rows))


def pooled_table(table: pd.DataFrame, *, baseline: str = "random") -> str:
    """Fig. 5 numbers: mean z per strategy and the MWU p-value vs baseline."""
    import pandas as pd

    from enrich.evaluate import stats as S

    pc = S.pooled_comparison(table, baseline=baseline)
    rows = [
        {
            "strategy": r["strategy"],
            "n": int(r["n"]),
            "mean z": f"{r['mean_z']:+.2f}",
            f"{baseline} n": int(r["n_baseline"]),
            f"{baseline} mean z": f"{r['mean_z_baseline']:+.2f}",
            "p": f"{_p(float(r['p']))} {r['stars']}",
        }
        for r in S.records(pc.tests)
    ]
    sizes = ", ".join(f"{s:,}" for s in pc.sizes)
    return _md(pd.DataFrame(rows)) + f"\nSizes pooled: {sizes}.\n"


def scale_table() -> str:
    """What ran: models per point, sizes, wall time (sum of per-model wall_s) per study."""
    import pandas as pd

    rows = []
    extra = [s for runs in REPLICATES.values() for s in runs[1:]]
    ablations = [a for a, _, _ in ABLATIONS.values()]
    for study in (*BENCHMARKS, *extra, *ablations, *STRATEGY_STUDIES):
        t = load_results(study)
        meta = _meta(study)
        if t is None:
            continue
        cfg = meta.get("config", {})
        ok = t.loc[t["status"] == "ok"]
        sub = ok.loc[ok["strategy"] != "full"]
        per_point = sub.groupby(["strategy", "size"]).size()
        rows.append(
            {
                "study": study,
                "train / val / test": f"{meta.get('n_train', '?')} / {meta.get('n_val', '?')} / "
                f"{meta.get('n_test', '?')}",
                "planned inits × models": f"{cfg.get('initializations')} × {cfg.get('models')}",
                "models per point (min–max)": (
                    f"{per_point.min()}–{per_point.max()}" if len(per_point) else "0"
                ),
                "sizes": str(sub["size"].nunique()),
                "models ok / failed": f"{len(ok)} / {int((t['status'] != 'ok').sum())}",
                "training time (sum of models)": f"{t['wall_s'].sum() / 60:.0f} min",
            }
        )
    return _md(pd.DataFrame(rows)) if rows else "(no benchmark has run yet)\n"


def holm_table(table: pd.DataFrame, *, baseline: str = "random") -> str:
    """Each strategy vs `baseline` at each size: difference of means, Mann-Whitney p and
    Holm's correction over the whole family (every strategy and size of the study)."""
    import pandas as pd

    from enrich.evaluate.verdict import compare_strategies

    cmp = compare_strategies(table, baseline=baseline)
    cmp = cmp.loc[cmp["comparison"] == "baseline"]
    rows = [
        {
            "strategy": r.strategy,
            "size": f"{int(r.size):,}",
            "n": f"{int(r.n)} vs {int(r.n_vs)}",
            "mean": f"{r.mean:.3f}",
            baseline: f"{r.mean_vs:.3f}",
            "difference": f"{r.mean - r.mean_vs:+.3f}",
            "p": _p(float(r.p)),
            "p (Holm)": f"{_p(float(r.p_holm))} {r.stars}".strip(),
        }
        for r in cmp.itertuples(index=False)
    ]
    return _md(pd.DataFrame(rows)) + (
        f"\nHolm's correction runs over all {len(rows)} comparisons with {baseline} above.\n"
    )


def efficiency_table(table: pd.DataFrame, *, baseline: str = "random") -> str:
    """Labels each strategy needs to match `baseline`'s mean at each size (95% bootstrap CI)."""
    import pandas as pd

    from enrich.evaluate.verdict import label_efficiency

    eff = label_efficiency(table, baseline=baseline, n_boot=1000, seed=0)

    def count(v: float) -> str:
        return "more than measured" if math.isinf(v) else f"{v:,.0f}"

    rows = [
        {
            "strategy": r.strategy,
            f"{baseline} labels": f"{int(r.size):,}",
            f"{baseline} mean": f"{r.baseline_mean:.3f}",
            "labels to match": count(float(r.labels)),
            "ratio": "–" if math.isinf(r.ratio) else f"{r.ratio:.2f}",
            "95% CI (labels)": f"{count(float(r.ci_low))} – {count(float(r.ci_high))}",
            "note": "" if r.status == "reached" else str(r.status),
        }
        for r in eff.itertuples(index=False)
    ]
    return _md(pd.DataFrame(rows)) + (
        "\nRatio < 1: the strategy matches random with fewer labels. The interval resamples "
        "the models of every point (1,000 draws).\n"
    )


def diversity_table(study: str) -> str | None:
    """Leinster-Cobbold diversity (q = 1) of the selected subsets, mean over initializations."""
    import pandas as pd

    path = RESULTS / study / "diversity.csv"
    if not path.exists():
        return None
    div = pd.read_csv(path)
    if div.empty:
        return None
    mean = div.pivot_table(index="size", columns="strategy", values="diversity", aggfunc="mean")
    rows = []
    for size, r in mean.iterrows():
        row = {"size": f"{int(size):,}"}
        row.update({str(k): f"{v:,.1f}" for k, v in r.items() if math.isfinite(v)})
        rows.append(row)
    return _md(pd.DataFrame(rows).fillna("–")) + (
        "\nEffective number of distinct images in the subset (Leinster & Cobbold, q = 1, "
        "cosine similarity of the embeddings the strategies saw), mean over initializations.\n"
    )


def coverage_table(study: str) -> str | None:
    """Table 2: per size and strategy, images per class (and subjects), from coverage.csv."""
    import pandas as pd

    path = RESULTS / study / "coverage.csv"
    if not path.exists():
        return None
    cov = pd.read_csv(path, dtype={"class": str})
    classes = [c for c in dict.fromkeys(cov["class"]) if c != "all"]
    has_patients = cov["patients"].notna().any()
    has_clips = "clips" in cov.columns and cov["clips"].notna().any()
    rows = []
    for size, g in cov.groupby("size", sort=True):
        row = {"size": f"{int(size):,} ({_pct(float(g['fraction'].iloc[0]), 1)})"}
        for name, h in g.groupby("strategy", sort=False):
            parts = []
            if classes:
                per = {str(c): float(v) for c, v in zip(h["class"], h["images"], strict=True)}
                parts.append(" / ".join(f"{per.get(c, 0):.0f}" for c in classes))
            allrow = h.loc[h["class"] == "all"]
            if has_patients:
                parts.append(f"{float(allrow['patients'].iloc[0]):.0f} subjects")
            if has_clips:
                parts.append(f"{float(allrow['clips'].iloc[0]):.0f} clips")
            row[str(name)] = ", ".join(parts)
        rows.append(row)
    note = (
        f"Images per class ({' / '.join(classes)}), mean over initializations.\n" if classes else ""
    )
    return _md(pd.DataFrame(rows).fillna("")) + ("\n" + note if note else "")


def tables() -> dict[str, str]:
    """Every generated block of docs/results.md, by name."""
    out: dict[str, str] = {}
    red = redundancy_table()
    if red is not None:
        out["redundancy"] = red
    out["scale"] = scale_table()
    clips = clip_redundancy_table()
    if clips is not None:
        out["redundancy_clips"] = clips
    for study in (*BENCHMARKS, *STRATEGY_STUDIES):
        t = load_results(study)
        if t is None:
            continue
        every_strategy = study in STRATEGY_STUDIES
        spi = float(_meta(study).get("seconds_per_image", 3.0))
        out[f"{study}.sizes"] = per_size_table(t)
        if every_strategy:
            out[f"{study}.holm"] = holm_table(t)
            out[f"{study}.efficiency"] = efficiency_table(t)
        if (t["strategy"] == "full").any():
            out[f"{study}.headline"] = headline_table(t, seconds_per_image=spi)
        out[f"{study}.pooled"] = pooled_table(t)
        blocks = {"coverage": coverage_table(study)}
        if every_strategy:
            blocks["diversity"] = diversity_table(study)
        for tag, block in blocks.items():
            if block is not None:
                out[f"{study}.{tag}"] = block
    for name, runs in REPLICATES.items():
        rep = replicate_results(name)
        if rep is None:
            continue
        spi = float(_meta(runs[0]).get("seconds_per_image", 3.0))
        out[f"{name}.sizes"] = per_size_table(rep)
        out[f"{name}.headline"] = headline_table(rep, seconds_per_image=spi)
        out[f"{name}.pooled"] = pooled_table(rep)
    for name, (pixels_study, parent, _) in ABLATIONS.items():
        ab = ablation_results(name)
        if ab is None:
            continue
        spi = float(_meta(parent).get("seconds_per_image", 3.0))
        out[f"{name}.sizes"] = per_size_table(ab)
        out[f"{name}.headline"] = headline_table(ab, seconds_per_image=spi)
        out[f"{name}.pooled"] = pooled_table(ab)
        out[f"{name}.pooled_vs_betavae"] = pooled_table(ab, baseline="enrich_betavae")
        cov = coverage_table(pixels_study)
        if cov is not None:
            out[f"{name}.coverage"] = cov
    return out


# ----------------------------------------------------------------------------- figures


def _save(fig: Any, name: str) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(RESULTS / name, dpi=110, bbox_inches="tight")
    plt.close(fig)


def figures() -> list[str]:
    """Draw every figure whose inputs are committed; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import pandas as pd

    from enrich.evaluate import stats as S
    from enrich.report import plots as P

    written: list[str] = []
    path = RESULTS / "redundancy" / "max_similarity.csv.gz"
    if path.exists():
        import matplotlib.pyplot as plt

        t = pd.read_csv(path)
        embedders = list(dict.fromkeys(t["embedder"]))
        fig, axes = plt.subplots(1, len(embedders), figsize=(5.5 * len(embedders), 4.0))
        for ax, embedder in zip(np.atleast_1d(axes), embedders, strict=True):
            sub = t.loc[t["embedder"] == embedder]
            curves = {
                str(k): g["max_similarity"].to_numpy()
                for k, g in sub.groupby("dataset", sort=False)
            }
            P.plot_redundancy_cdf(curves, ax=ax)
            ax.set_title(f"{EMBEDDER_NAMES.get(embedder, embedder)} embeddings")
        _save(fig, "fig1_redundancy.png")
        written.append("fig1_redundancy.png")
    jobs: list[tuple[str, pd.DataFrame, float]] = []
    for study in BENCHMARKS:
        t = load_results(study)
        if t is not None:
            jobs.append((study, t, float(_meta(study).get("seconds_per_image", 3.0))))
    for study in STRATEGY_STUDIES:
        t = load_results(study)
        if t is not None:
            jobs.append((study, t, float(_meta(study).get("seconds_per_image", 3.0))))
            from enrich.evaluate.verdict import label_efficiency, plot_label_efficiency

            eff = label_efficiency(t, n_boot=1000, seed=0)
            if len(eff):
                _save(plot_label_efficiency(eff), f"eff_{study}.png")
                written.append(f"eff_{study}.png")
    for name, runs in REPLICATES.items():
        rep = replicate_results(name)
        if rep is not None:
            jobs.append((name, rep, float(_meta(runs[0]).get("seconds_per_image", 3.0))))
    for name, (_, parent, _) in ABLATIONS.items():
        ab = ablation_results(name)
        if ab is not None:
            jobs.append((name, ab, float(_meta(parent).get("seconds_per_image", 3.0))))
    for name, t, spi in jobs:
        draws: list[tuple[str, Callable[[], Any]]] = [
            ("fig3", lambda t=t: P.plot_performance(t)),
            ("fig5", lambda t=t: P.plot_pooled(t)),
        ]
        if (t["strategy"] == S.FULL).any():
            draws.append(
                ("fig4", lambda t=t, spi=spi: P.plot_labeling_time(t, seconds_per_image=spi))
            )
        for tag, draw in draws:
            fname = f"{tag}_{name}.png"
            _save(draw(), fname)
            written.append(fname)
    return written


def fill_doc(text: str, blocks: dict[str, str]) -> str:
    """Replace each ``<!-- table:NAME -->`` block of `text` with ``blocks[NAME]`` (if any)."""

    def sub(m: re.Match[str]) -> str:
        body = blocks.get(m.group(2))
        if body is None:
            body = "(not run yet)\n"
        return m.group(1) + body + m.group(4)

    return _BLOCK.sub(sub, text)


def doc_blocks(text: str) -> dict[str, str]:
    """The generated blocks currently in the doc, by name."""
    return {m.group(2): m.group(3) for m in _BLOCK.finditer(text)}


def build_all() -> None:
    """Figures and the doc's table blocks from docs/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    written = figures()
    if DOC.exists():
        DOC.write_text(fill_doc(DOC.read_text(encoding="utf-8"), tables()), encoding="utf-8")
    print("figures:", ", ".join(written) or "none")
