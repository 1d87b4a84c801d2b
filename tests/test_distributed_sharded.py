"""`enrich rank --engine dask --mode sharded`: the in-process order, with the rows on the
workers, on a real 2-worker LocalCluster (ties, near-ties, seeds, labeled ids, lost workers)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from enrich.cli import main
from enrich.errors import EnrichError
from enrich.select import rank

from _data import clustered

ROOT = Path(__file__).resolve().parents[1]


def with_ties(n: int, d: int, seed: int) -> np.ndarray:
    """Clustered rows plus exact copies (same angle: reference cosine exactly 1.0), scaled
    copies, and near-copies whose cosines differ from a copy's far below float32 resolution
    (so the float32 products cannot tell them apart and the reference must decide)."""
    X = clustered(n, d, seed=seed)
    rng = np.random.default_rng(seed)
    copies = X[rng.choice(n, size=n // 10, replace=False)]
    scaled = X[rng.choice(n, size=n // 20, replace=False)] * 3.0
    near = X[rng.choice(n, size=n // 20, replace=False)].astype(np.float64)
    near[:, 0] += 1e-7  # below float32 resolution of the cosine
    out = np.vstack([X, copies, scaled, near.astype(np.float32), copies[: n // 40]])
    return out[rng.permutation(len(out))]


def same(got, want) -> None:
    np.testing.assert_array_equal(got.order, want.order)
    np.testing.assert_array_equal(got.max_similarity, want.max_similarity)
    assert got.n_initial == want.n_initial


# --------------------------------------------------------------------------- no cluster
@pytest.mark.parametrize("b", [1, 3, 10, 50, 200])
def test_smallest_keys_are_the_lexicographic_smallest(b: int) -> None:
    from enrich.distributed.sharded import _smallest

    rng = np.random.default_rng(b)
    s = rng.integers(0, 6, size=120).astype(np.float64)  # many exact ties
    s[rng.choice(120, size=30, replace=False)] = np.inf  # chosen rows
    keys = sorted((v, i) for i, v in enumerate(s.tolist()) if v != np.inf)
    got, nxt = _smallest(s, b)
    assert got.tolist() == sorted(i for _, i in keys[:b])
    assert nxt == (keys[b] if b < len(keys) else (np.inf, np.iinfo(np.int64).max))


@pytest.mark.parametrize("n", [1, 2, 7, 300])
def test_rows_permuted_in_place(n: int) -> None:
    from enrich.distributed.sharded import _permute_rows

    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    perm = rng.permutation(n)
    Y = X.copy()
    _permute_rows(Y, perm)
    np.testing.assert_array_equal(Y, X[perm])


# --------------------------------------------------------------------------- the order
@pytest.mark.parametrize(
    ("initial", "budget", "candidates", "shards"),
    [
        (None, None, 64, None),  # one random seed, the full order
        (0.02, 300, 1, 3),  # one candidate per shard: one pick per round at least
        (5, 400, 16, 5),
        ([3, 700, 12, 655], 250, 1024, 2),  # labeled ids
    ],
)
def test_sharded_is_the_in_process_order(client, initial, budget, candidates, shards) -> None:
    from enrich.distributed.rank import rank as on_dask

    X = with_ties(700, 12, seed=2)
    got = on_dask(
        X,
        client,
        mode="sharded",
        initial=initial,
        budget=budget,
        seed=11,
        candidates=candidates,
        n_shards=shards,
    )
    want = rank(X, initial=initial, budget=budget, seed=11)
    same(got, want)
    assert got.info["mode"] == "sharded" and got.info["approximate"] is False
    assert got.info["rounds"] >= 1 and got.info["recovered_shards"] == 0
    if candidates == 1:
        assert got.info["rounds"] <= len(got.picks)
    # the ties are really there: copies picked after their original at similarity exactly 1
    if budget is None:
        assert (got.max_similarity == 1.0).sum() > 0


@pytest.mark.slow
def test_sharded_on_the_shipped_xrays(client) -> None:
    from enrich.distributed.rank import rank as on_dask

    data = np.load(ROOT / "data" / "pneumoniamnist" / "pneumoniamnist.npz")
    X = data["train_images"].reshape(len(data["train_images"]), -1)  # pixels as embeddings
    got = on_dask(X, client, mode="sharded", initial=0.01, budget=1500, seed=0)
    same(got, rank(X, initial=0.01, budget=1500, seed=0))


def test_sharded_reads_a_lazy_array_on_the_workers(client, tmp_path: Path) -> None:
    zarr = pytest.importorskip("zarr")
    from enrich.distributed.rank import rank as on_dask

    X = with_ties(400, 8, seed=4)
    z = zarr.create_array(tmp_path / "v.zarr", shape=X.shape, chunks=(64, 8), dtype="float32")
    z[:] = X
    lazy = zarr.open_array(tmp_path / "v.zarr", mode="r")
    got = on_dask(lazy, client, mode="sharded", budget=120, seed=3)
    same(got, rank(X, budget=120, seed=3))
    bad = X.copy()
    bad[250] = np.nan
    zarr.create_array(tmp_path / "b.zarr", shape=X.shape, chunks=(64, 8), dtype="float32")[:] = bad
    with pytest.raises(EnrichError, match="NaN or inf: ids 250"):
        on_dask(zarr.open_array(tmp_path / "b.zarr", mode="r"), client, mode="sharded")


@pytest.mark.parametrize("lazy", [False, True])
def test_shards_sent_or_read_in_pieces(client, tmp_path: Path, lazy: bool) -> None:
    from enrich.distributed.sharded import rank_sharded

    X = with_ties(300, 6, seed=6)  # 375 rows in 3 shards of 125: pieces of 31, 31, 31, 32
    src: object = X
    if lazy:
        zarr = pytest.importorskip("zarr")
        src = zarr.create_array(tmp_path / "v.zarr", shape=X.shape, chunks=(50, 6), dtype="float32")
        src[:] = X  # type: ignore[index]
    init = np.array([4, 200])
    picks, sims, _ = rank_sharded(src, client, init, 150, n_shards=3, piece_rows=31)
    want = rank(X, initial=init, budget=150)
    np.testing.assert_array_equal(picks, want.picks)
    np.testing.assert_array_equal(sims, want.max_similarity[2:])


def test_sharded_rejects_what_in_process_rejects(client) -> None:
    from enrich.distributed.rank import rank as on_dask

    X = clustered(50, 4, seed=0)
    with pytest.raises(EnrichError, match="larger than the 49 images left"):
        on_dask(X, client, mode="sharded", budget=50)
    with pytest.raises(EnrichError, match="out of range"):
        on_dask(X, client, mode="sharded", initial=[3, 50])
    bad = X.copy()
    bad[7] = np.nan
    with pytest.raises(EnrichError, match="NaN or inf: ids 7"):
        on_dask(bad, client, mode="sharded")
    with pytest.raises(EnrichError, match="candidates=0"):
        on_dask(X, client, mode="sharded", candidates=0)


# --------------------------------------------------------------------------- reliability
@pytest.mark.slow
@pytest.mark.parametrize("from_store", [False, True])
def test_killing_a_worker_mid_rank_gives_the_same_order(
    client, tmp_path: Path, from_store: bool
) -> None:
    from enrich.distributed.rank import rank as on_dask

    X = with_ties(6000, 16, seed=8)
    source: object = X
    if from_store:  # the lost shard is read again from the store by a live worker
        from enrich.distributed._rows import StoreRows
        from enrich.distributed.store import save_zarr
        from enrich.embeddings import Embeddings

        ids = np.array([f"i{i}" for i in range(len(X))])
        save_zarr(tmp_path / "e.zarr", Embeddings(ids, X), chunk_rows=512)
        source = StoreRows.open(str(tmp_path / "e.zarr"))
    killed: list[int] = []

    def kill_at_third_round(n: int) -> None:
        # called by the driver after each round: kill the process of a worker holding a
        # shard (SIGKILL: no goodbye), so the next round finds its actor gone
        if len(killed) == 0 and n and (rounds := len(calls)) == 2:
            held = client.has_what()
            victim = next(w for w, keys in held.items() if any("Shard" in k for k in keys))
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)
            killed.append(rounds)
        calls.append(n)

    calls: list[int] = []
    got = on_dask(
        source,
        client,
        mode="sharded",
        initial=0.01,
        seed=1,
        candidates=8,
        progress=kill_at_third_round,
    )
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it, for the next tests
    assert killed and len(calls) > 3  # killed mid-run, with rounds to go
    same(got, rank(X, initial=0.01, seed=1))
    assert got.info["recovered_shards"] >= 1


@pytest.mark.slow
def test_killing_the_worker_of_an_exact_rank_gives_the_same_order(client) -> None:
    import threading
    import time

    from enrich.distributed.rank import rank as on_dask

    X = clustered(40000, 32, seed=1)
    out: dict[str, object] = {}
    run = threading.Thread(target=lambda: out.setdefault("r", on_dask(X, client, seed=1)))
    run.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        # the worker the embeddings were sent to: killed, it takes them (and the task) along
        held = client.has_what()
        busy = [w for w, keys in held.items() if any("ndarray" in k for k in keys)]
        victim = busy[0] if busy else None
        time.sleep(0.01)
    assert victim is not None
    os.kill(client.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)
    run.join(timeout=300)
    client.wait_for_workers(2, timeout=60)
    got = out["r"]
    assert got.info["lost_workers"] >= 1  # type: ignore[attr-defined]
    same(got, rank(X, seed=1))


def test_too_many_lost_workers_is_one_line(client, monkeypatch) -> None:
    import enrich.distributed.sharded as mod

    shards = mod._Shards(client, clustered(50, 4, seed=0), [(0, 25), (25, 50)], 4096, 10)
    monkeypatch.setattr(mod, "MAX_RECOVERIES", 1)
    monkeypatch.setattr(mod._Shards, "_forget", lambda self, dead: None)  # they are alive
    try:
        shards.rebuild([0])  # the first loss is rebuilt
        assert shards.actors[0].memory().result() > 0
        with pytest.raises(EnrichError, match=r"lost Dask workers 2 times .* nothing was written"):
            shards.rebuild([1])
    finally:
        shards.close()


# --------------------------------------------------------------------------- the CLI
@pytest.mark.slow
def test_cli_rank_sharded_matches_local(client, tmp_path: Path) -> None:
    X = with_ties(500, 8, seed=5)
    ids = np.array([f"img_{i:04d}.png" for i in range(len(X))])
    np.savez(tmp_path / "emb.npz", ids=ids, vectors=X)
    (tmp_path / "labeled.txt").write_text("img_0003.png\nimg_0100.png\n")
    base = ["rank", "-e", str(tmp_path / "emb.npz"), "--labeled", str(tmp_path / "labeled.txt")]
    assert main([*base, "-o", str(tmp_path / "local.csv")]) == 0
    address = client.scheduler.address
    argv = [*base, "-o", str(tmp_path / "dask.csv"), "--scheduler", address, "--mode", "sharded"]
    assert main([*argv, "--shards", "3"]) == 0
    assert (tmp_path / "local.csv").read_bytes() == (tmp_path / "dask.csv").read_bytes()
    side = json.loads((tmp_path / "dask.json").read_text())
    assert side["engine"]["mode"] == "sharded" and side["engine"]["n_shards"] == 3
    assert side["method"].endswith("(sharded)") and side["scheduler"] == address


def _driver_never_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make loading a store's vectors (or checking its rows) in this process, the driver,
    an error; the worker processes are untouched."""
    import enrich.distributed._rows as rows
    from enrich.distributed.store import LazyEmbeddings

    def refuse(*_a, **_k):
        raise AssertionError("the driver read the store's vectors")

    monkeypatch.setattr(LazyEmbeddings, "load", refuse)
    monkeypatch.setattr(rows, "read_checked", refuse)
    monkeypatch.setattr(rows, "_checked", refuse)


@pytest.mark.slow
def test_cli_rank_on_a_store_leaves_the_rows_to_the_workers(
    client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from enrich.workspace import Workspace

    X = with_ties(500, 8, seed=6)  # exact copies among the rows: ties broken by index
    ids = np.array([f"img_{i:04d}.png" for i in range(len(X))])
    np.savez(tmp_path / "emb.npz", ids=ids, vectors=X)
    store = tmp_path / "emb.zarr"
    assert main(["convert", str(tmp_path / "emb.npz"), str(store), "--chunk-rows", "64"]) == 0
    ws = Workspace.create(tmp_path / "ws")  # a workspace holding only embeddings.zarr
    ws.write_manifest(pd.DataFrame({"id": ids, "source_path": ids}))
    assert main(["convert", str(tmp_path / "emb.npz"), str(ws.path / "embeddings.zarr")]) == 0
    assert not ws.embeddings_path.exists()
    (tmp_path / "labeled.txt").write_text("img_0003.png\nimg_0100.png\n")
    labeled = ["--labeled", str(tmp_path / "labeled.txt")]
    npz = str(tmp_path / "emb.npz")
    assert main(["rank", "-e", npz, *labeled, "-o", str(tmp_path / "local.csv")]) == 0
    assert main(["rank", "-w", str(ws.path), *labeled, "-o", str(tmp_path / "wlocal.csv")]) == 0
    local = json.loads((tmp_path / "local.json").read_text())
    address = client.scheduler.address
    _driver_never_loads(monkeypatch)
    for mode, src, want in [
        ("sharded", ["-e", str(store)], "local"),
        ("exact", ["-e", str(store)], "local"),
        ("sharded", ["-w", str(ws.path)], "wlocal"),
    ]:
        out = tmp_path / f"{mode}-{src[0]}.csv"
        argv = ["rank", *src, *labeled, "-o", str(out), "--scheduler", address, "--mode", mode]
        assert main(argv) == 0
        assert out.read_bytes() == (tmp_path / f"{want}.csv").read_bytes()
        side = json.loads(out.with_suffix(".json").read_text())
        assert side["engine"]["mode"] == mode
        assert side["input_fingerprint"] == local["input_fingerprint"]
        assert side["n_images"] == len(X) and side["n_dims"] == X.shape[1]


@pytest.mark.slow
def test_cli_rank_on_a_bad_store_names_the_ids_from_the_workers(
    client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from enrich.distributed.store import save_zarr
    from enrich.embeddings import Embeddings

    X = clustered(300, 6, seed=2)
    ids = np.array([f"img_{i:04d}.png" for i in range(len(X))])
    X[[17, 230]] = np.nan
    X[120] = 0.0
    save_zarr(tmp_path / "nan.zarr", Embeddings(ids, X), chunk_rows=64)
    Y = X.copy()
    Y[[17, 230]] = 1.0
    save_zarr(tmp_path / "zero.zarr", Embeddings(ids, Y), chunk_rows=64)
    _driver_never_loads(monkeypatch)
    address = client.scheduler.address
    for name, mode, match in [
        ("nan", "sharded", "row(s) with NaN or inf: ids img_0017.png"),
        ("zero", "sharded", "1 zero-norm row(s), for which cosine similarity is undefined: "
         "ids img_0120.png"),
        ("nan", "exact", "2 row(s) with NaN or inf: ids img_0017.png, img_0230.png"),
    ]:  # fmt: skip
        out = tmp_path / f"{name}-{mode}.csv"
        argv = ["rank", "-e", str(tmp_path / f"{name}.zarr"), "-o", str(out)]
        assert main([*argv, "--scheduler", address, "--mode", mode, "--shards", "3"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err
        assert f"{name}.zarr" in err and not out.exists()


@pytest.mark.parametrize(("initial", "candidates"), [(0.01, 64), ([0, 1, 2, 900], 16)])
def test_pruned_shards_give_the_in_process_order(client, initial, candidates) -> None:
    # shards grouped around pivots (as in-process above 4096 rows), here on small shards
    from enrich.distributed.sharded import rank_sharded
    from enrich.select.base import resolve_initial

    X = with_ties(1200, 10, seed=9)
    init = resolve_initial(initial, len(X), np.random.default_rng(5))
    picks, sims, info = rank_sharded(
        X, client, init, 600, n_shards=3, candidates=candidates, prune_from=0
    )
    want = rank(X, initial=initial, budget=600, seed=5)
    np.testing.assert_array_equal(np.concatenate([init, picks]), want.order)
    np.testing.assert_array_equal(sims, want.max_similarity[len(init) :])
    assert info["batches_pruned"] > 0  # the pruned path really ran


# --------------------------------------------------------------------------- enrich next
def _loop_ws(path: Path):
    import pandas as pd

    from enrich.embeddings import Embeddings
    from enrich.workspace import Workspace

    X = with_ties(600, 8, seed=12)
    ids = np.array([f"img_{i:04d}.png" for i in range(len(X))])
    ws = Workspace.create(path)
    ws.write_manifest(
        pd.DataFrame(
            {
                "id": ids,
                "source_path": ids,
                "patient_id": [f"P{i % 7}" for i in range(len(X))],
                "clip_id": [f"C{i % 40}" for i in range(len(X))],
            }
        )
    )
    ws.write_embeddings(Embeddings(ids, X))
    return ws


@pytest.mark.parametrize("mode", ["exact", "sharded"])
def test_next_batches_on_dask_are_the_local_records(client, tmp_path: Path, mode: str) -> None:
    import functools

    from enrich.distributed.rank import rank as on_dask
    from enrich.loop import next_batch

    ranker = functools.partial(on_dask, client=client, mode=mode, candidates=16)
    now = "2026-01-01T00:00:00+00:00"
    records = {}
    for engine, kw in (("local", {}), ("dask", {"ranker": ranker})):
        ws = _loop_ws(tmp_path / engine)
        first = next_batch(ws, budget=20, seed=4, now=now, **kw)  # nothing labeled: seeded
        labeled = first.ids[:15]  # batch 1 stays open: its other 5 images are handed out
        second = next_batch(
            ws, labeled=labeled, budget=30, seed=4, max_per_patient=5, now=now, **kw
        )
        third = next_batch(ws, labeled=labeled, budget=10, until_similarity=0.999, now=now, **kw)
        records[engine] = [b.record for b in (first, second, third)]
    assert records["dask"] == records["local"]
    per_patient = np.bincount([int(i[4:8]) % 7 for i in records["local"][1]["ids"]])
    assert per_patient.max() == 5  # the cap really bound


@pytest.mark.slow
def test_cli_next_on_dask_matches_local(client, tmp_path: Path) -> None:
    address = client.scheduler.address
    out = {}
    for engine, extra in (
        ("local", []),
        ("dask", ["--scheduler", address, "--mode", "sharded"]),
    ):
        ws = _loop_ws(tmp_path / engine / "ws")
        (tmp_path / engine / "labeled.csv").write_text("id\nimg_0001.png\nimg_0300.png\n")
        argv = ["next", "-w", str(ws.path), "--budget", "25", "-o", str(tmp_path / engine / "b")]
        argv += ["--labeled", str(tmp_path / engine / "labeled.csv"), *extra]
        assert main(argv) == 0
        rec = json.loads((tmp_path / engine / "b" / "batch.json").read_text())
        out[engine] = (
            (tmp_path / engine / "b" / "batch.csv").read_bytes(),
            {k: v for k, v in rec.items() if k not in ("created_at", "checksum", "workspace")},
        )
    assert out["dask"] == out["local"]
    assert len(out["local"][1]["ids"]) == 25


@pytest.mark.slow
def test_cli_next_on_a_zarr_workspace_leaves_the_rows_to_the_workers(
    client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = client.scheduler.address
    engines = {
        "local": [],
        "dask": ["--scheduler", address, "--mode", "sharded"],
        "exact": ["--scheduler", address, "--mode", "exact"],
    }
    for engine in engines:
        ws = _loop_ws(tmp_path / engine / "ws")
        npz = ws.embeddings_path
        assert main(["convert", str(npz), str(ws.path / "embeddings.zarr")]) == 0
        npz.unlink()  # the workspace holds only embeddings.zarr
    out = {}
    for engine, extra in engines.items():
        ws_path = tmp_path / engine / "ws"
        (tmp_path / engine / "labeled.csv").write_text("id\nimg_0001.png\nimg_0300.png\n")
        argv = ["next", "-w", str(ws_path), "--budget", "25", "-o", str(tmp_path / engine / "b")]
        argv += ["--labeled", str(tmp_path / engine / "labeled.csv"), "--max-per-patient", "5"]
        if engine != "local":
            _driver_never_loads(monkeypatch)
        assert main([*argv, *extra]) == 0
        rec = json.loads((tmp_path / engine / "b" / "batch.json").read_text())
        out[engine] = (
            (tmp_path / engine / "b" / "batch.csv").read_bytes(),
            {k: v for k, v in rec.items() if k not in ("created_at", "checksum", "workspace")},
        )
    assert out["dask"] == out["local"] and out["exact"] == out["local"]
    assert len(out["local"][1]["ids"]) == 25


def test_next_engine_option_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = _loop_ws(tmp_path / "ws")
    base = ["next", "-w", str(ws.path), "--budget", "5", "-o", str(tmp_path / "b")]
    for extra, match in [
        (["--mode", "sharded"], "--mode sharded needs --engine dask"),
        (["--scheduler", "local:2", "--strategy", "random"], "runs --strategy enrich"),
        (["--engine", "local", "--scheduler", "local:2"], "--scheduler needs --engine dask"),
    ]:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b").exists()


def test_next_with_an_unreachable_scheduler_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import enrich.distributed._client as mod

    monkeypatch.setattr(mod, "CONNECT_TIMEOUT", "1s")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens
    ws = _loop_ws(tmp_path / "ws")
    argv = ["next", "-w", str(ws.path), "--budget", "5", "-o", str(tmp_path / "b")]
    assert main([*argv, "--scheduler", address, "--mode", "sharded"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot reach the Dask scheduler at {address}" in err
    assert not (tmp_path / "b").exists() and not list((ws.path / "runs").glob("batches/*.json"))
    # a request already answered is answered again without a cluster
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--scheduler", address, "--mode", "sharded"]) == 0
    assert "already made for these labels" in capsys.readouterr().out
