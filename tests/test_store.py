"""Embeddings as a chunked Zarr store: lossless both ways, lazy, read by every command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from enrich.cli import main
from enrich.distributed.store import open_zarr, save_zarr, to_dask
from enrich.embeddings import Embeddings, fingerprint, load_embeddings
from enrich.errors import EnrichError

from _data import clustered

zarr = pytest.importorskip("zarr")


def sample(n: int = 300, d: int = 8, seed: int = 0) -> Embeddings:
    ids = np.array([f"patient_{i // 7:03d}/clip.dcm#{i % 7}" for i in range(n)])
    ids[3] = "ünïcode name.png"  # non-ASCII ids survive too
    return Embeddings(ids, clustered(n, d, seed=seed))


def test_npz_to_zarr_and_back_is_lossless(tmp_path: Path) -> None:
    emb = sample()
    np.savez(tmp_path / "e.npz", ids=emb.ids, vectors=emb.vectors)
    assert (
        main(["convert", str(tmp_path / "e.npz"), str(tmp_path / "e.zarr"), "--chunk-rows", "64"])
        == 0
    )
    lazy = open_zarr(tmp_path / "e.zarr")
    assert lazy.vectors.chunks == (64, 8) and lazy.vectors.shape == (300, 8)
    assert main(["convert", str(tmp_path / "e.zarr"), str(tmp_path / "back.npz")]) == 0
    for path in ("e.zarr", "back.npz"):
        got = load_embeddings(tmp_path / path)
        np.testing.assert_array_equal(got.ids, emb.ids)
        assert got.vectors.dtype == np.float32
        assert got.vectors.tobytes() == emb.vectors.tobytes()
        assert fingerprint(got.vectors, got.ids) == fingerprint(emb.vectors, emb.ids)
    attrs = dict(zarr.open_group(str(tmp_path / "e.zarr"), mode="r").attrs)
    assert attrs["format"] == "enrich-embeddings" and attrs["n_images"] == 300
    assert attrs["fingerprint"] == fingerprint(emb.vectors, emb.ids)


def test_open_is_lazy_and_reads_rows(tmp_path: Path) -> None:
    emb = sample(500, 6, seed=1)
    save_zarr(tmp_path / "s.zarr", emb, chunk_rows=100)
    lazy = open_zarr(tmp_path / "s.zarr")
    assert not isinstance(lazy.vectors, np.ndarray)  # on disk until read
    np.testing.assert_array_equal(lazy.vectors[120:260], emb.vectors[120:260])
    arr = to_dask(tmp_path / "s.zarr")
    assert arr.chunks[0] == (100,) * 5
    np.testing.assert_array_equal(arr[250:].compute(), emb.vectors[250:])


def test_every_command_reads_a_store(tmp_path: Path) -> None:
    emb = sample(400, 8, seed=2)
    np.savez(tmp_path / "e.npz", ids=emb.ids, vectors=emb.vectors)
    save_zarr(tmp_path / "e.zarr", emb, chunk_rows=50)
    for src in ("e.npz", "e.zarr"):
        e = str(tmp_path / src)
        assert main(["rank", "-e", e, "--seed", "1", "-o", str(tmp_path / f"{src}.csv")]) == 0
        assert main(["redundancy", "-e", e, "-o", str(tmp_path / f"{src}.red")]) == 0
    assert (tmp_path / "e.npz.csv").read_bytes() == (tmp_path / "e.zarr.csv").read_bytes()
    a = (tmp_path / "e.npz.red" / "redundancy.csv").read_bytes()
    assert a == (tmp_path / "e.zarr.red" / "redundancy.csv").read_bytes()
    side = json.loads((tmp_path / "e.zarr.json").read_text())
    assert side["input_fingerprint"] == fingerprint(emb.vectors, emb.ids)


def test_a_workspace_can_hold_a_store(tmp_path: Path) -> None:
    from enrich.workspace import Workspace

    emb = sample(120, 4, seed=3)
    ws = Workspace.create(tmp_path / "ws")
    ws.write_manifest(pd.DataFrame({"id": emb.ids, "source_path": [f"/d/{i}" for i in emb.ids]}))
    save_zarr(ws.path / "embeddings.zarr", emb, chunk_rows=32)
    assert ws.has_embeddings()
    got = ws.embeddings()
    assert got.vectors.tobytes() == emb.vectors.tobytes()
    assert main(["rank", "-w", str(ws.path), "--budget", "10"]) == 0
    order = pd.read_csv(ws.path / "runs" / "rank" / "order.csv")
    assert len(order) == 11 and set(order["id"]) <= set(emb.ids)


def test_writing_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = sample(100, 4, seed=4), sample(80, 4, seed=5)
    target = tmp_path / "s.zarr"
    save_zarr(target, first, chunk_rows=30)
    real = zarr.Group.create_array
    calls = {"n": 0}

    def boom(self, name, **kw):  # fail after the vectors are half written
        calls["n"] += 1
        if name == "ids":
            raise OSError("disk full")
        return real(self, name, **kw)

    monkeypatch.setattr(zarr.Group, "create_array", boom)
    with pytest.raises(OSError, match="disk full"):
        save_zarr(target, second)
    monkeypatch.undo()
    assert calls["n"] == 2
    kept = load_embeddings(target)  # the previous store, whole
    assert kept.vectors.tobytes() == first.vectors.tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # no temp left behind
    save_zarr(target, second)  # replacing works
    assert load_embeddings(target).vectors.tobytes() == second.vectors.tobytes()


def test_bad_stores_are_one_line_errors(tmp_path: Path, capsys) -> None:
    g = zarr.open_group(str(tmp_path / "no_ids.zarr"), mode="w")
    g.create_array("vectors", shape=(3, 2), dtype="float32")
    with pytest.raises(EnrichError, match="expected 'vectors' and 'ids'"):
        load_embeddings(tmp_path / "no_ids.zarr")
    g = zarr.open_group(str(tmp_path / "short.zarr"), mode="w")
    g.create_array("vectors", shape=(3, 2), dtype="float32")
    g.create_array("ids", shape=(2,), dtype=str)[:] = np.array(["a", "b"])
    with pytest.raises(EnrichError, match="2 ids for 3 vectors"):
        open_zarr(tmp_path / "short.zarr")
    g = zarr.open_group(str(tmp_path / "dup.zarr"), mode="w")
    g.create_array("vectors", shape=(2, 2), dtype="float32")
    g.create_array("ids", shape=(2,), dtype=str)[:] = np.array(["a", "a"])
    with pytest.raises(EnrichError, match="duplicate ids: a"):
        open_zarr(tmp_path / "dup.zarr")
    with pytest.raises(EnrichError, match="refusing to save duplicate ids"):
        save_zarr(tmp_path / "x.zarr", Embeddings(np.array(["a", "a"]), np.eye(2)))
    (tmp_path / "plain").mkdir()
    with pytest.raises(EnrichError, match="is a folder, expected"):
        load_embeddings(tmp_path / "plain")
    with pytest.raises(EnrichError, match="not a Zarr store; refusing"):
        save_zarr(tmp_path / "plain", sample(10, 2))
    np.save(tmp_path / "e.npy", clustered(20, 3, seed=0))
    for argv, match in [
        (["convert", str(tmp_path / "e.npy"), str(tmp_path / "e.txt")], "ending in .zarr"),
        (
            ["convert", str(tmp_path / "e.npy"), str(tmp_path / "e.npz"), "--chunk-rows", "5"],
            "--chunk-rows is for a .zarr OUT",
        ),
        (
            ["convert", str(tmp_path / "e.npy"), str(tmp_path / "e.zarr"), "--chunk-rows", "0"],
            "chunk_rows=0",
        ),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, err
