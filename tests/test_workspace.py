"""The workspace folder: layout, validation, atomic writes, ids, and incremental embedding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from enrich.embeddings import Embeddings
from enrich.errors import EnrichError
from enrich.workspace import MANIFEST_COLUMNS, Workspace

DATA = Path(__file__).resolve().parents[1] / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


def manifest(ids: list[str], root: str = "/data") -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "source_path": [f"{root}/{i.split('#')[0]}" for i in ids]})


def emb(ids: list[str], d: int = 3, seed: int = 0) -> Embeddings:
    vecs = np.random.default_rng(seed).normal(size=(len(ids), d)).astype(np.float32)
    return Embeddings(np.array(ids), vecs)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith("."))


# -- creating and opening ----------------------------------------------------------------------
def test_create_and_open(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    assert (ws.path / "workspace.json").is_file() and ws.runs_dir.is_dir()
    assert Workspace.open(tmp_path / "ws").path == ws.path
    assert ws.model_dir == ws.path / "model" and not ws.has_manifest()
    assert Workspace.create(tmp_path / "ws").path == ws.path  # reusing is fine
    assert ws.run_dir("first").is_dir()
    with pytest.raises(EnrichError, match=r"run name '\.\./x'"):
        ws.run_dir("../x")


def test_open_and_create_refuse_what_is_not_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(EnrichError, match="no such workspace folder"):
        Workspace.open(tmp_path / "missing")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"x")
    with pytest.raises(EnrichError, match="not an enrich workspace"):
        Workspace.open(tmp_path / "images")
    with pytest.raises(EnrichError, match="non-empty folder that is not an enrich workspace"):
        Workspace.create(tmp_path / "images")
    (tmp_path / "file").write_text("x")
    with pytest.raises(EnrichError, match="is a file"):
        Workspace.create(tmp_path / "file")
    ws = Workspace.create(tmp_path / "ws")
    with pytest.raises(EnrichError, match="no manifest; run `enrich embed"):
        ws.manifest()
    with pytest.raises(EnrichError, match="no embeddings; run `enrich embed"):
        ws.embeddings()


# -- manifest ------------------------------------------------------------------------------------
def test_manifest_round_trip_has_the_contract_columns(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path)
    df = manifest(["a.png", "clip.dcm#0", "clip.dcm#1"])
    df["frame"] = [0, 0, 1]
    df["label"] = [1, None, 0]
    df["extra"] = ["x", "y", "z"]
    ws.write_manifest(df)
    got = ws.manifest()
    assert list(got.columns) == [*MANIFEST_COLUMNS, "extra"]
    assert got["id"].tolist() == ["a.png", "clip.dcm#0", "clip.dcm#1"]
    assert got["frame"].tolist() == [0, 0, 1] and str(got["frame"].dtype) == "Int64"
    assert got["label"].tolist()[0] == "1" and pd.isna(got["label"].iloc[1])
    assert got["patient_id"].isna().all()


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pd.DataFrame({"id": ["a"]}), "expected at least 'id' and 'source_path'"),
        (pd.DataFrame({"id": ["a", "a"], "source_path": ["x", "y"]}), "duplicate ids: a"),
        (pd.DataFrame({"id": [None], "source_path": ["x"]}), "1 row.s. have no id"),
    ],
)
def test_bad_manifests_are_refused(tmp_path: Path, frame: pd.DataFrame, match: str) -> None:
    ws = Workspace.create(tmp_path)
    with pytest.raises(EnrichError, match=match):
        ws.write_manifest(frame)
    assert not ws.has_manifest()


# -- embeddings ----------------------------------------------------------------------------------
def test_embeddings_follow_the_manifest(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path)
    e = emb(["c", "a", "b", "stray"])
    ws.write_embeddings(e, info={"embedder": "pixels", "model_fingerprint": "sha256:x"})
    ws.write_manifest(manifest(["a", "b", "c"]))
    got = ws.embeddings()
    assert got.ids.tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(got.vectors, e.vectors[[1, 2, 0]])
    assert got.meta["embedder"] == "pixels" and got.meta["workspace"] == str(tmp_path)
    assert ws.embeddings(aligned=False).ids.tolist() == ["c", "a", "b", "stray"]
    assert ws.embeddings_info()["n_images"] == 4
    ws.write_manifest(manifest(["a", "b", "c", "new1", "new2"]))
    with pytest.raises(EnrichError, match=r"2 image\(s\) of the manifest have no embedding \(new1"):
        ws.embeddings()


def test_embeddings_without_manifest_are_returned_as_stored(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path)
    ws.write_embeddings(emb(["z", "y"]))
    assert ws.embeddings().ids.tolist() == ["z", "y"]
    assert Workspace.open(tmp_path).embeddings().vectors.dtype == np.float32


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.create(tmp_path)
    ws.write_manifest(manifest(["a", "b"]))
    ws.write_embeddings(emb(["a", "b"]))
    before_manifest = ws.manifest_path.read_bytes()
    before_emb = ws.embeddings_path.read_bytes()

    def half_write(self, path, *args, **kwargs):  # writes a partial file, then dies
        Path(path).write_bytes(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_write)
    with pytest.raises(OSError, match="disk full"):
        ws.write_manifest(manifest(["a", "b", "c"]))

    def half_savez(path, **arrays):
        Path(path).write_bytes(b"PK half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", half_savez)
    with pytest.raises(KeyboardInterrupt):
        ws.write_embeddings(emb(["a", "b", "c"]))
    assert ws.manifest_path.read_bytes() == before_manifest
    assert ws.embeddings_path.read_bytes() == before_emb
    assert leftovers(tmp_path) == []  # no temporary files left behind
    assert ws.manifest()["id"].tolist() == ["a", "b"]


def test_skipped_round_trip(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path)
    assert ws.skipped().empty
    ws.write_skipped(pd.DataFrame({"source_path": ["/x/bad.png"], "reason": ["truncated"]}))
    assert ws.skipped().to_dict("records") == [{"source_path": "/x/bad.png", "reason": "truncated"}]
    ws.write_skipped(pd.DataFrame({"source_path": [], "reason": []}))
    assert ws.skipped().empty and ws.skipped_path.is_file()


# -- ids -------------------------------------------------------------------------------------------
def test_resolve_ids_accepts_ids_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "imgs"
    ws = Workspace.create(tmp_path / "ws")
    ids = ["a.png", "sub/b.png", "echo.dcm#0", "echo.dcm#1", "echo.dcm#2"]
    ws.write_manifest(manifest(ids, root=str(root)))
    assert ws.resolve_ids(["sub/b.png", "a.png"]).tolist() == ["sub/b.png", "a.png"]
    # A file path stands for all its frames; repeats are dropped, order kept.
    got = ws.resolve_ids([str(root / "echo.dcm"), "a.png", "echo.dcm#1", str(root / "a.png")])
    assert got.tolist() == ["echo.dcm#0", "echo.dcm#1", "echo.dcm#2", "a.png"]
    # The same path written differently, and a multi-frame id without its frame.
    monkeypatch.chdir(tmp_path)
    assert ws.resolve_ids(["imgs/sub/../sub/b.png"]).tolist() == ["sub/b.png"]
    assert ws.resolve_ids(["echo.dcm", " ", None]).tolist() == [
        "echo.dcm#0",
        "echo.dcm#1",
        "echo.dcm#2",
    ]
    with pytest.raises(
        EnrichError, match=r"2 item\(s\) are neither ids nor source paths.*nope\.png, c"
    ):
        ws.resolve_ids(["a.png", "nope.png", "c"])


# -- incremental embedding (needs the readers) -------------------------------------------
def write_pngs(folder: Path, images: np.ndarray, start: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, im in enumerate(images):
        Image.fromarray(im).save(folder / f"img{start + k:04d}.png")


@pytest.fixture(scope="module")
def xray_u8() -> np.ndarray:
    with np.load(DATA) as data:
        return data["train_images"][::20][:120]


@pytest.mark.parametrize("embedder", ["pixels", pytest.param("betavae", marks=pytest.mark.slow)])
def test_grown_folder_embeds_only_new_images(
    embedder: str, xray_u8: np.ndarray, tmp_path: Path
) -> None:
    from enrich.embed.api import embed_sources

    if embedder == "betavae":
        torch = pytest.importorskip("torch")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)

    src, ws_path = tmp_path / "src", tmp_path / "ws"
    write_pngs(src, xray_u8[:80], 0)
    opts = {"latent_dim": 8}
    if embedder == "betavae":
        opts.update(max_epochs=2, min_epoch_images=0)
    run = {"embedder": embedder, "embedder_options": opts, "progress": False, "device": "cpu"}

    first = embed_sources([src], ws_path, **run)
    assert (first.n_images, first.n_new, first.model_reused) == (80, 80, False)
    ws = Workspace.open(ws_path)
    old = ws.embeddings()
    config_before = (ws.model_dir / "config.json").read_bytes()

    write_pngs(src, xray_u8[80:], 80)  # the folder grows by 40 images
    second = embed_sources([src], ws_path, **run)
    assert (second.n_images, second.n_new, second.model_reused) == (120, 40, True)
    new = ws.embeddings()
    assert len(new) == 120 and new.ids.tolist() == sorted(new.ids.tolist())
    np.testing.assert_array_equal(new.vectors[new.index_of(old.ids)], old.vectors)
    assert (ws.model_dir / "config.json").read_bytes() == config_before
    assert ws.manifest()["id"].tolist() == new.ids.tolist()

    # The reused model embeds the new images as a fresh run of the same model would.
    from enrich.embed import load_embedder
    from enrich.embed.api import read_images
    from enrich.preprocess import Preprocess

    added = ws.manifest().iloc[80:]
    _, images = read_images(added, Preprocess())
    direct = load_embedder(ws.model_dir, **({"device": "cpu"} if embedder == "betavae" else {}))
    np.testing.assert_allclose(direct.transform(images), new.vectors[80:], atol=1e-5)

    # A removed file leaves the manifest and the embeddings; nothing is re-embedded.
    (src / "img0000.png").unlink()
    third = embed_sources([src], ws_path, **run)
    assert (third.n_images, third.n_new) == (119, 0)
    assert "img0000.png" not in ws.embeddings().ids.tolist()

    # Another seed is another model: everything is embedded again.
    fourth = embed_sources([src], ws_path, seed=5, **run)
    assert (fourth.n_new, fourth.model_reused) == (119, False)
    assert leftovers(ws_path) == []
    if embedder == "betavae":
        torch.set_num_threads(threads)


def test_unreadable_files_are_listed_not_fatal(xray_u8: np.ndarray, tmp_path: Path) -> None:
    from enrich.embed.api import embed_sources

    src = tmp_path / "src"
    write_pngs(src, xray_u8[:10], 0)
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    summary = embed_sources(
        [src],
        tmp_path / "ws",
        embedder="pixels",
        embedder_options={"latent_dim": 4},
        progress=False,
    )
    assert (summary.n_images, summary.n_skipped) == (10, 1)
    skipped = Workspace.open(tmp_path / "ws").skipped()
    assert skipped["source_path"].tolist() == [str(src / "corrupt.png")]
    assert "line" in dir(summary) and "1 skipped" in summary.line()


def test_source_problems_write_nothing(tmp_path: Path) -> None:
    from enrich.embed.api import embed_sources

    (tmp_path / "empty").mkdir()
    with pytest.raises(EnrichError, match="no images found"):
        embed_sources([tmp_path / "empty"], tmp_path / "ws", embedder="pixels", progress=False)
    assert not (tmp_path / "ws").exists()
    with pytest.raises(EnrichError, match="embedder 'nope' is unknown"):
        embed_sources([tmp_path / "empty"], tmp_path / "ws", embedder="nope")
    assert os.listdir(tmp_path) == ["empty"]
