"""Dask workers reading their own rows of a Zarr store; approximate redundancy on Dask.

All on a real 2-worker LocalCluster; the results must be the in-process engine's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")
pytest.importorskip("zarr")

from _worker_faults import DieOnce, pixels_setup
from enrich.cli import main
from enrich.distributed._rows import StoreRows
from enrich.distributed.store import save_zarr
from enrich.embeddings import Embeddings
from enrich.errors import EnrichError
from enrich.redundancy import redundancy
from enrich.similarity import cosine_at, normalize_rows, row_sqnorms

from _data import clustered


def data(n: int = 700, d: int = 12, seed: int = 3) -> np.ndarray:
    X = clustered(n, d, seed=seed)
    # near-duplicates that chain across tiles, and exact copies (ties on the reference)
    return np.vstack([X, X[::9] * 1.01 + 0.02, X[::31]])


def store(tmp_path: Path, X: np.ndarray, chunk_rows: int = 64, name: str = "e.zarr") -> Path:
    ids = np.array([f"study_{i // 10:03d}/img_{i:04d}.png" for i in range(len(X))])
    save_zarr(tmp_path / name, Embeddings(ids, X), chunk_rows=chunk_rows)
    return tmp_path / name


# --------------------------------------------------------------------------- exact
@pytest.mark.parametrize("method", ["representative", "components"])
def test_exact_from_a_store_is_the_in_process_result(client, tmp_path: Path, method: str) -> None:
    from enrich.distributed.redundancy import redundancy as on_dask

    X = data()
    rows = StoreRows.open(str(store(tmp_path, X)))
    for block in (32, 100):
        got = on_dask(rows, client, group_threshold=0.97, group_method=method, block=block)
        want = redundancy(X, group_threshold=0.97, group_method=method, block=block)
        assert got.info["reads"] == "store" and got.info["tasks"] > 2
        np.testing.assert_array_equal(got.max_similarity, want.max_similarity)
        np.testing.assert_array_equal(got.nearest, want.nearest)
        np.testing.assert_array_equal(got.group, want.group)
        assert len(want.groups()) > 5


def test_a_task_reads_only_its_own_row_blocks(tmp_path: Path, monkeypatch) -> None:
    import enrich.distributed.redundancy as mod

    X = data()
    rows = StoreRows.open(str(store(tmp_path, X, chunk_rows=50)))
    read: list[tuple[int, int]] = []
    real = mod.read_rows

    def spy(source, a, b):
        read.append((a, b))
        return real(source, a, b)

    monkeypatch.setattr(mod, "read_rows", spy)
    tasks = mod._square_tasks(-(-len(X) // 50), 28)  # 7 groups of 2-3 blocks
    assert len(tasks) >= 6
    assert sorted(t for task in tasks for t in task) == [
        (i, j) for i in range(len(X) // 50 + 1) for j in range(i, len(X) // 50 + 1)
    ]
    task = tasks[1]  # an off-diagonal square
    part = mod._fold_tiles(rows, task, 0.97, 50, False)
    blocks = sorted({b for tile in task for b in tile})
    got = sorted({r for a, b in read for r in range(a, b)})  # the rows read, each once
    assert got == sorted({r for b in blocks for r in range(b * 50, min(len(X), b * 50 + 50))})
    assert sum(b - a for a, b in read) == len(got)
    assert len(read) <= 2  # two runs of consecutive blocks, one read each
    assert len(blocks) * 50 < len(X) / 2  # far fewer rows than the whole store
    # its partial result is what in-process tiles give for those rows
    assert np.isfinite(part.best[blocks[0] * 50 : blocks[0] * 50 + 50]).all()


def test_a_bad_row_in_the_store_is_one_line_naming_it(client, tmp_path: Path) -> None:
    from enrich.distributed.redundancy import redundancy as on_dask

    # One defect per store: with both, whichever parallel task fails first names its own.
    X = data()
    X[123, 4] = np.nan
    rows = StoreRows.open(str(store(tmp_path, X)))
    with pytest.raises(EnrichError, match=r"NaN or inf: ids study_012/img_0123\.png"):
        on_dask(rows, client, block=64)
    X[123, 4] = 1.0
    X[400] = 0
    rows = StoreRows.open(str(store(tmp_path, X, name="z.zarr")))
    with pytest.raises(EnrichError, match=r"zero-norm row\(s\).*study_040/img_0400\.png"):
        on_dask(rows, client, block=64)


def test_cli_store_on_dask_matches_local(client, tmp_path: Path) -> None:
    X = data()
    path = store(tmp_path, X)
    base = ["redundancy", "-e", str(path), "--threshold", "0.97"]
    assert main([*base, "-o", str(tmp_path / "local")]) == 0
    address = client.scheduler.address
    assert main([*base, "-o", str(tmp_path / "dask"), "--scheduler", address]) == 0
    a = (tmp_path / "local" / "redundancy.csv").read_bytes()
    b = (tmp_path / "dask" / "redundancy.csv").read_bytes()
    assert a == b
    sa = json.loads((tmp_path / "local" / "summary.json").read_text())["datasets"]["e"]
    sb = json.loads((tmp_path / "dask" / "summary.json").read_text())["datasets"]["e"]
    assert sb["engine"]["reads"] == "store"
    assert sa["input_fingerprint"] == sb["input_fingerprint"]
    assert pd.read_csv(tmp_path / "dask" / "redundancy.csv")["duplicate_group"].max() >= 1


def test_cli_workspace_store_on_dask(client, tmp_path: Path) -> None:
    from enrich.workspace import Workspace

    X = data(300, 8, seed=1)
    ws = Workspace.create(tmp_path / "ws")
    path = store(ws.path, X, name="embeddings.zarr")
    from enrich.distributed.store import open_zarr

    ids = open_zarr(path).ids
    ws.write_manifest(pd.DataFrame({"id": ids, "source_path": [f"/x/{i}.png" for i in ids]}))
    out = tmp_path / "o"
    assert main(["redundancy", "-w", str(ws.path), "-o", str(out)]) == 0
    local = (out / "redundancy.csv").read_bytes()
    out2 = tmp_path / "o2"
    address = client.scheduler.address
    assert main(["redundancy", "-w", str(ws.path), "-o", str(out2), "--scheduler", address]) == 0
    assert (out2 / "redundancy.csv").read_bytes() == local
    s = json.loads((out2 / "summary.json").read_text())["datasets"]["ws"]
    assert s["engine"]["reads"] == "store"


# --------------------------------------------------------------------------- approximate
def test_approximate_on_dask_from_array_and_store(client, tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    from enrich.approximate import ApproxOptions, recall_rows
    from enrich.distributed.approximate import redundancy as on_dask

    X = data(3000, 16, seed=4)
    exact = redundancy(X, group_threshold=0.97)
    rows = StoreRows.open(str(store(tmp_path, X, chunk_rows=256)))
    opts = ApproxOptions(nprobe=4, recall_sample=500)
    Xn = normalize_rows(X)
    sq = row_sqnorms(Xn)
    for source in (X, rows):
        r = on_dask(source, client, options=opts, group_threshold=0.97)
        assert r.info["reads"] == ("store" if source is rows else "scattered")
        assert r.info["tasks"] >= 2
        want = [cosine_at(Xn, sq, i, Xn, sq, int(j)) for i, j in enumerate(r.nearest)]
        np.testing.assert_array_equal(r.max_similarity, np.float32(np.clip(want, -1, 1)))
        assert (r.max_similarity <= exact.max_similarity).all()
        rec = r.info["approximate"]["recall"]
        sample = recall_rows(len(X), 500, 0)
        hit = r.max_similarity[sample] >= exact.max_similarity[sample]
        assert rec["sample"] == 500 and rec["recall"] == pytest.approx(hit.mean())
        assert rec["recall"] >= 0.95  # measured: 1.0 on this clustered data
        U = Xn.astype(np.float64)
        for g in r.groups():
            assert (U[g[1:]] @ U[g[0]] >= 0.97 - 1e-9).all()
        assert len(r.groups()) > 10


def test_cli_approximate_on_dask(client, tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    path = store(tmp_path, data(2000, 16, seed=2), chunk_rows=256)
    address = client.scheduler.address
    out = tmp_path / "o"
    args = ["redundancy", "-e", str(path), "-o", str(out), "--approximate", "hnsw"]
    assert main([*args, "--scheduler", address, "--recall-sample", "300"]) == 0
    s = json.loads((out / "summary.json").read_text())["datasets"]["e"]
    assert s["approximate"]["method"] == "hnsw" and s["approximate"]["recall"]["sample"] == 300
    assert s["engine"]["reads"] == "store" and "approximate" not in s["engine"]
    assert len(pd.read_csv(out / "redundancy.csv")) == 2000 + 2000 // 9 + 1 + 2000 // 31 + 1


# --------------------------------------------------------------------------- parallel writes
DATA = Path(__file__).resolve().parents[1] / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 real chest X-rays as PNGs, plus one that fails when read."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pngs")
    with np.load(DATA) as d:
        images = d["train_images"][::50][:60]
    for k, im in enumerate(images):
        Image.fromarray(im).save(root / f"x{k:03d}.png")
    whole = (root / "x001.png").read_bytes()
    (root / "x030b.png").write_bytes(whole[: len(whole) // 2])  # read-time skip, mid-list
    return root


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".embeddings"))


def test_embed_on_dask_writes_the_store_from_the_workers(client, pngs: Path, tmp_path) -> None:
    from enrich.distributed.store import open_zarr
    from enrich.embeddings import fingerprint
    from enrich.workspace import Workspace

    base = ["embed", str(pngs), "--embedder", "pixels", "--latent-dim", "8", "-q"]
    assert main([*base, "-w", str(tmp_path / "local")]) == 0
    address = client.scheduler.address
    assert main([*base, "-w", str(tmp_path / "dask"), "--scheduler", address]) == 0
    a, b = Workspace(tmp_path / "local"), Workspace(tmp_path / "dask")
    assert not b.embeddings_path.exists() and (b.path / "embeddings.zarr").is_dir()
    assert hidden(b.path) == []  # no staging or temporary store left
    ea, eb = a.embeddings(), b.embeddings()
    np.testing.assert_array_equal(ea.ids, eb.ids)
    np.testing.assert_allclose(ea.vectors, eb.vectors, rtol=1e-5, atol=1e-6)
    assert len(eb.ids) == 60  # the truncated file skipped, listed once
    assert [Path(p).name for p in b.skipped()["source_path"]] == ["x030b.png"]
    info = json.loads(b.embeddings_info_path.read_text())
    assert info["format"] == "zarr" and info["n_images"] == 60
    lazy = open_zarr(b.path / "embeddings.zarr")
    assert info["fingerprint"] == fingerprint(eb.vectors, eb.ids) == lazy.meta["stored_fingerprint"]
    # every command reads it; redundancy on Dask reads it on the workers
    out = tmp_path / "r"
    assert main(["redundancy", "-w", str(b.path), "-o", str(out), "--scheduler", address]) == 0
    s = json.loads((out / "summary.json").read_text())["datasets"]["dask"]
    assert s["engine"]["reads"] == "store" and s["input_fingerprint"] == info["fingerprint"]
    # a rerun reuses the model and the stored vectors, and writes the same store
    assert main([*base, "-w", str(b.path), "--scheduler", address]) == 0
    again = b.embeddings()
    assert again.vectors.tobytes() == eb.vectors.tobytes()
    assert json.loads(b.embeddings_info_path.read_text())["n_new"] == 0
    assert not b.embeddings_path.exists() and hidden(b.path) == []


def test_an_interrupted_store_write_never_looks_complete(client, tmp_path: Path) -> None:
    from enrich.distributed.embed import StagedVectors
    from enrich.distributed.store import _zarr, load_zarr

    zarr = _zarr()
    staging = tmp_path / ".embeddings.zarr.parts-1"
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(c, 4)).astype(np.float32) for c in (30, 0, 45)]
    for k, v in enumerate(parts):
        arr = zarr.open_array(str(staging / f"shard-{k}"), mode="w", shape=v.shape, chunks=(16, 4))
        arr[:] = v
    ids = np.array([f"i{k}" for k in range(75)])
    staged = StagedVectors(str(staging), [30, 0, 45], 4, client)
    target = tmp_path / "embeddings.zarr"
    fp = staged.write_store(target, ids, chunk_rows=16)  # chunks straddle the shards
    got = load_zarr(target)
    np.testing.assert_array_equal(got.vectors, np.concatenate(parts))
    np.testing.assert_array_equal(got.ids, ids)
    assert fp.startswith("sha256:")
    # a shard lost before the copy: the write fails, the previous store is untouched
    import shutil

    shutil.rmtree(staging / "shard-2")
    with pytest.raises(Exception):  # noqa: B017 - whatever zarr raises on the worker
        StagedVectors(str(staging), [30, 0, 45], 4, client).write_store(target, ids[::-1])
    np.testing.assert_array_equal(load_zarr(target).ids, ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".embeddings.zarr.parts-1",
        "embeddings.zarr",
    ]


@pytest.mark.slow
def test_a_worker_dying_while_staging_loses_nothing(client, pngs: Path, tmp_path: Path) -> None:
    from enrich.distributed.embed import embed_shards
    from enrich.distributed.store import load_zarr
    from enrich.embed.pixels import PixelsEmbedder

    rows, pp, options, ids, images, model = pixels_setup(pngs, tmp_path / "model")
    marker = tmp_path / "died"
    staging = tmp_path / ".embeddings.zarr.parts-1"
    got_ids, staged, skips = embed_shards(
        rows,
        DieOnce(pp, str(marker), at=20),  # type: ignore[arg-type]
        options,
        tmp_path / "model",
        PixelsEmbedder,
        16,
        client=client,
        n_shards=3,
        staging=staging,
    )
    assert marker.read_text() == "killed"  # a worker really died while embedding a shard
    assert got_ids == ids and len(staged) == len(ids)
    assert [Path(s.source_path).name for s in skips] == ["x030b.png"]  # listed once
    staged.write_store(tmp_path / "embeddings.zarr", np.asarray(got_ids))
    got = load_zarr(tmp_path / "embeddings.zarr")
    np.testing.assert_array_equal(got.ids, ids)
    np.testing.assert_allclose(got.vectors, model.transform(images), rtol=1e-5, atol=1e-6)
    client.wait_for_workers(2, timeout=60)


# --------------------------------------------------------------------------- composable
def test_composable_from_a_store_reads_shards_on_the_workers(
    client, tmp_path: Path, monkeypatch
) -> None:
    # The composable coreset from a Zarr store: each task reads its own shard's rows, the
    # driver only the union of the picks; the order and radius are those from the array.
    import enrich.distributed._rows as rows_mod
    from enrich.distributed.rank import rank as on_dask

    X = clustered(600, 8, seed=4)
    rows = StoreRows.open(str(store(tmp_path, X)))
    want = on_dask(X, client, mode="composable", initial=2, budget=25, seed=4, n_shards=3)
    read: list[tuple[int, int]] = []
    whole = rows_mod.read_checked
    monkeypatch.setattr(
        rows_mod, "read_checked", lambda s, a, b: read.append((a, b)) or whole(s, a, b)
    )
    got = on_dask(rows, client, mode="composable", initial=2, budget=25, seed=4, n_shards=3)
    assert read == []  # the driver read no row range (the workers, in their processes, did)
    np.testing.assert_array_equal(got.order, want.order)
    np.testing.assert_array_equal(got.max_similarity, want.max_similarity)
    assert got.info["covering_similarity"] == want.info["covering_similarity"]
    assert got.info["coreset_size"] == want.info["coreset_size"]
    # a bad row is still one line naming it, found by the worker that reads it
    X[321, 2] = np.inf
    bad = StoreRows.open(str(store(tmp_path, X, name="bad.zarr")))
    with pytest.raises(EnrichError, match=r"NaN or inf: ids study_032/img_0321\.png"):
        on_dask(bad, client, mode="composable", initial=2, budget=25, seed=4, n_shards=3)


def test_cli_composable_from_a_store_matches_the_npz(client, tmp_path: Path, monkeypatch) -> None:
    import enrich.distributed._rows as rows_mod
    from enrich.distributed.store import LazyEmbeddings

    X = clustered(500, 8, seed=8)
    path = store(tmp_path, X)
    ids = np.array([f"study_{i // 10:03d}/img_{i:04d}.png" for i in range(len(X))])
    np.savez(tmp_path / "e.npz", ids=ids, vectors=X)
    address = client.scheduler.address
    common = ["--scheduler", address, "--mode", "composable", "--budget", "30", "--seed", "2"]
    assert (
        main(["rank", "-e", str(tmp_path / "e.npz"), "-o", str(tmp_path / "npz.csv"), *common]) == 0
    )

    def refuse(*_a, **_k):
        raise AssertionError("the driver loaded the store's vectors")

    # the driver reads only the union of the shard picks; the workers read the shards
    monkeypatch.setattr(LazyEmbeddings, "load", refuse)
    monkeypatch.setattr(rows_mod, "read_checked", refuse)
    assert main(["rank", "-e", str(path), "-o", str(tmp_path / "zarr.csv"), *common]) == 0
    assert (tmp_path / "zarr.csv").read_bytes() == (tmp_path / "npz.csv").read_bytes()
    side = json.loads((tmp_path / "zarr.json").read_text())
    assert side["engine"]["mode"] == "composable" and side["engine"]["approximate"] is True
    assert (
        side["input_fingerprint"]
        == json.loads((tmp_path / "npz.json").read_text())["input_fingerprint"]
    )
