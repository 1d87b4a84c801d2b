"""Speed and memory of the embedders (issue 3, section 5).

On PneumoniaMNIST (shipped in ``data/``), resized 28→64 as ``enrich embed`` does:

1. β-VAE training on 5,000 images to early stopping (target ≤ 5 min on 2 cores);
2. embedding throughput, model only and with preprocessing (target ≥ 1,000 images/s);
3. peak RSS while embedding 100,000 images, streamed from a synthetic source built from the
   real ones (target < 2 GB), measured in a fresh child process with ``getrusage``;
4. the same for the ``pixels`` baseline, and the GPU throughput when CUDA is available;
5. the whole ``enrich embed`` pipeline on a folder of PNG files (read, preprocess, embed).

Usage::

    python benchmarks/bench_embed.py            # the full run (several minutes)
    python benchmarks/bench_embed.py --quick    # a smoke test in well under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


def load_xrays(n: int, *, labels: bool = False):
    """``(n, 64, 64)`` float32 in [0, 1]: PneumoniaMNIST (train, val, test), through
    ``Preprocess``, a seeded random sample of both classes; with ``labels``, also (n,) int."""
    from enrich.preprocess import Preprocess

    with np.load(DATA) as data:
        raw = np.concatenate([data["train_images"], data["val_images"], data["test_images"]])
        y = np.concatenate([data[f"{s}_labels"].ravel() for s in ("train", "val", "test")])
    pick = np.sort(np.random.default_rng(0).permutation(len(raw))[:n])
    pp = Preprocess()
    images = np.stack([pp(im) for im in raw[pick]])
    return (images, y[pick].astype(int)) if labels else images


def knn_agreement(vectors: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Share of images whose k cosine-nearest neighbours' majority label is their own label.

    A cheap proxy for "similar embeddings mean similar images" (labels are not used to
    embed)."""
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = v @ v.T  # (n, n); n ≤ 5,000 here
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argpartition(-sims, k, axis=1)[:, :k]
    return float(((labels[nearest].mean(axis=1) > 0.5) == labels).mean())


def spread(vectors: np.ndarray) -> dict[str, float]:
    """Is the embedding collapsed? Participation ratio of its covariance (effective number of
    directions), and the share of images whose max cosine similarity to another is > 0.9."""
    ev = np.clip(np.linalg.eigvalsh(np.cov(vectors.T.astype(np.float64))), 0, None)
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    best = sims.max(axis=1)
    return {
        "participation_ratio": float(ev.sum() ** 2 / (ev**2).sum()),
        "above_0.9": float((best > 0.9).mean()),
        "median_max_similarity": float(np.median(best)),
    }


def synthetic_stream(base: np.ndarray, n: int, batch: int, seed: int = 0):
    """``n`` distinct 64×64 images in batches: real images, shifted, flipped and re-lit."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n:
        b = min(batch, n - done)
        idx = rng.integers(0, len(base), b)
        x = base[idx]
        x = np.roll(x, rng.integers(-3, 4), axis=2)
        if rng.random() < 0.5:
            x = x[:, :, ::-1]
        x = np.clip(x * rng.uniform(0.8, 1.2, (b, 1, 1)).astype(np.float32), 0, 1)
        yield np.ascontiguousarray(x, dtype=np.float32)
        done += b


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child_embed(model_dir: str, n: int, batch: int, threads: int, device: str) -> dict:
    """Run in a fresh process: load the model, embed `n` streamed images, report RSS."""
    import torch

    from enrich.embed import load_embedder

    torch.set_num_threads(threads)
    base = load_xrays(2000)
    options = {"device": device} if "betavae" in Path(model_dir).name else {}
    model = load_embedder(model_dir, **options)
    model.transform(base[:256])  # warm-up
    rss_before = peak_rss_mb()
    t, c = time.perf_counter(), time.process_time()
    out = model.transform_batches(synthetic_stream(base, n, batch), n=n)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    assert out.shape == (n, model.dim) and np.isfinite(out).all()
    return {
        "n": n,
        "seconds": seconds,
        "images_per_s": n / seconds,
        "cpu_seconds": cpu,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "vectors_mb": out.nbytes / 2**20,
    }


def run_child(*args: str) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"child failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def throughput(fn, images: np.ndarray, *, min_seconds: float = 3.0) -> tuple[float, float]:
    """Images per wall-clock second, and per CPU-second (all threads)."""
    fn(images[:256])
    n, t, c = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t < min_seconds:
        fn(images)
        n += len(images)
    return n / (time.perf_counter() - t), n / (time.process_time() - c)


def pipeline_on_pngs(n: int, tmp: Path, threads: int) -> dict:
    """``embed_sources`` on a folder of `n` PNGs (28×28, as shipped), pixels and β-VAE reuse."""
    from PIL import Image

    from enrich.embed.api import embed_sources

    with np.load(DATA) as data:
        raw = np.concatenate([data["train_images"], data["val_images"], data["test_images"]])
    src = tmp / "pngs"
    for k in range(n):
        sub = src / f"{k // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(raw[k % len(raw)]).save(sub / f"{k:06d}.png")
    t = time.perf_counter()
    s = embed_sources([src], tmp / "ws_pixels", embedder="pixels", progress=False)
    seconds = time.perf_counter() - t
    return {"n": s.n_images, "seconds": seconds, "images_per_s": s.n_images / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-stream", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=512, help="images per streamed batch")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        model_dir, n, batch, threads, device = args.child
        print(json.dumps(child_embed(model_dir, int(n), int(batch), int(threads), device)))
        return 0

    import torch

    from enrich.embed import BetaVAEEmbedder, PixelsEmbedder

    if args.quick:
        args.n_train, args.n_stream, args.max_epochs = 600, 5000, 2
    torch.set_num_threads(args.threads)
    rows: list[tuple[str, str, str, str]] = []
    figures: dict[str, object] = {"threads": args.threads, "cpu_count": os.cpu_count()}

    t = time.perf_counter()
    images, labels = load_xrays(args.n_train, labels=True)
    prep_s = time.perf_counter() - t
    rows.append(("preprocess 28→64 (Preprocess)", f"{len(images) / prep_s:,.0f} img/s", "", ""))

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        # 1. training
        vae = BetaVAEEmbedder(
            seed=0,
            device="cpu",
            max_epochs=args.max_epochs,
            patience=args.patience,
            progress=True,
        )
        t, c = time.perf_counter(), time.process_time()
        vae.fit(images)
        train_s, train_cpu = time.perf_counter() - t, time.process_time() - c
        info = vae.fit_info_
        figures["train"] = {k: v for k, v in info.items() if k != "history"}
        rows.append(
            (
                f"β-VAE training, {len(images)} images (CPU)",
                f"{train_s:.0f} s",
                "≤ 300 s",
                f"{info['epochs']} epochs, best {info['best_epoch']}, {info['stopped']}, "
                f"val loss {info['best_val_loss']:.1f}; {train_cpu:.0f} CPU-s",
            )
        )
        vae.save(tmp / "betavae")
        figures["train_history"] = info.get("history")

        # 2. throughput, in this process
        rate, per_cpu = throughput(vae.transform, images[:2048])
        figures["betavae_cpu_img_s"] = rate
        rows.append(
            (
                "β-VAE embedding, model only (CPU)",
                f"{rate:,.0f} img/s",
                "≥ 1,000",
                f"{per_cpu:,.0f} img per CPU-s",
            )
        )
        pixels = PixelsEmbedder(seed=0).fit(images)
        pixels.save(tmp / "pixels")
        rate_px, per_cpu_px = throughput(pixels.transform, images[:2048])
        figures["pixels_img_s"] = rate_px
        rows.append(
            (
                "pixels embedding (PCA 256→128)",
                f"{rate_px:,.0f} img/s",
                "",
                f"{per_cpu_px:,.0f} img per CPU-s",
            )
        )

        q_vae = knn_agreement(vae.transform(images), labels)
        q_px = knn_agreement(pixels.transform(images), labels)
        q_raw = knn_agreement(images.reshape(len(images), -1) - images.mean(axis=0).ravel(), labels)
        figures["knn_agreement"] = {"betavae": q_vae, "pixels": q_px, "raw_pixels": q_raw}
        s_vae, s_px = spread(vae.transform(images)), spread(pixels.transform(images))
        figures["spread"] = {"betavae": s_vae, "pixels": s_px}
        rows.append(
            (
                "collapse check: participation ratio",
                f"β-VAE {s_vae['participation_ratio']:.1f}",
                "≫ 1",
                f"pixels/PCA {s_px['participation_ratio']:.1f} (≈ 1: one direction, collapsed)",
            )
        )
        rows.append(
            (
                "collapse check: max similarity > 0.9",
                f"β-VAE {s_vae['above_0.9']:.1%}",
                "< 100%",
                f"median {s_vae['median_max_similarity']:.3f}; pixels/PCA "
                f"{s_px['above_0.9']:.1%}, median {s_px['median_max_similarity']:.3f}",
            )
        )
        rows.append(
            (
                "5-NN label agreement (cosine), quality proxy",
                f"β-VAE {q_vae:.3f}",
                "",
                f"pixels/PCA {q_px:.3f}; raw centred pixels {q_raw:.3f} (normal vs pneumonia)",
            )
        )

        # 3. memory: a fresh process per embedder
        threads = str(args.threads)
        for name in ("betavae", "pixels"):
            r = run_child(str(tmp / name), str(args.n_stream), str(args.batch), threads, "cpu")
            figures[f"{name}_stream"] = r
            rows.append(
                (
                    f"{name}: stream {r['n']:,} images (CPU)",
                    f"{r['peak_rss_mb']:,.0f} MB peak RSS",
                    "< 2,048 MB",
                    f"{r['images_per_s']:,.0f} img/s ({r['n'] / r['cpu_seconds']:,.0f} per CPU-s) "
                    f"incl. synthesis; RSS before "
                    f"{r['rss_before_mb']:,.0f} MB; vectors {r['vectors_mb']:,.0f} MB",
                )
            )

        # 4. GPU
        if torch.cuda.is_available():
            r = run_child(str(tmp / "betavae"), str(args.n_stream), "1024", threads, "cuda")
            figures["betavae_cuda_stream"] = r
            rows.append(
                (
                    f"β-VAE: stream {r['n']:,} images ({torch.cuda.get_device_name(0)})",
                    f"{r['images_per_s']:,.0f} img/s",
                    "",
                    f"peak RSS {r['peak_rss_mb']:,.0f} MB",
                )
            )
        else:
            rows.append(("β-VAE on GPU", "n/a", "", "no CUDA device here"))

        # 5. the whole pipeline from files
        r = pipeline_on_pngs(1000 if args.quick else 10_000, tmp, args.threads)
        figures["pipeline_pngs"] = r
        rows.append(
            (
                f"enrich embed (pixels) on {r['n']:,} PNG files",
                f"{r['images_per_s']:,.0f} img/s",
                "",
                "discover + read + preprocess + fit + embed + write",
            )
        )

    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    header = ("measure", "result", "target", "notes")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(fmt.format(*row))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"(torch threads: {args.threads}; CPUs: {os.cpu_count()}; load average {load:.1f}; "
        f"torch {torch.__version__}). On a shared machine wall-clock rates drop with the load; "
        "CPU-s figures do not."
    )
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
