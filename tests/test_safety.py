"""Outputs that cannot be hijacked, half-written or mixed between runs (issue 9).

Locks (one writer per folder), atomic writes (exclusive temporaries, fsync, stale-temporary
cleanup, errors naming the real output), ``--out`` rules, CSV formula escaping, atomic
workspace creation, seed checks and ``--labeled`` parsing.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from enrich.cli import main
from enrich.errors import EnrichError

from _data import clustered

SRC = Path(__file__).resolve().parents[1] / "src"


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def emb_npz(tmp_path: Path) -> Path:
    p = tmp_path / "emb.npz"
    ids = np.array([f"img_{i:03d}.png" for i in range(60)])
    np.savez(p, ids=ids, vectors=clustered(60, 8, seed=1))
    return p


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("error: ")
    return lines[0]


class Holder:
    """Another process holding a lock file until the test ends."""

    def __init__(self, lock: Path, command: str) -> None:
        code = (
            "import sys\n"
            "from enrich._lock import locked\n"
            f"with locked({str(lock)!r}, command={command!r}):\n"
            "    print('ready', flush=True)\n"
            "    sys.stdin.read()\n"
        )
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def hold() -> Iterator[object]:
    holders: list[Holder] = []

    def start(lock: Path, command: str = "enrich test-holder") -> Holder:
        h = Holder(lock, command)
        holders.append(h)
        return h

    yield start
    for h in holders:
        if h.proc.poll() is None:
            h.release()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------ item 3/14: the lock
def test_a_held_lock_refuses_a_second_writer_naming_the_holder(tmp_path: Path, hold) -> None:
    from enrich._lock import LockedError, folder_lock

    h = hold(tmp_path / ".enrich.lock", "enrich benchmark -w ws")
    with pytest.raises(
        LockedError, match=rf"in use by `enrich benchmark -w ws` \(pid {h.proc.pid} on"
    ):
        with folder_lock(tmp_path):
            pass
    h.release()
    with folder_lock(tmp_path) as lock:  # released: free again
        info = json.loads(lock.read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert not lock.exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from enrich._lock import folder_lock

    pid = dead_pid()
    lock = tmp_path / ".enrich.lock"
    lock.write_text(
        json.dumps(
            {"pid": pid, "host": socket.gethostname(), "started": 1.0, "command": "enrich rank"}
        )
    )
    with folder_lock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert f"pid {pid}" in capsys.readouterr().err
    assert not lock.exists()


def test_without_flock_the_pid_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import enrich._lock as L

    monkeypatch.setattr(L, "fcntl", None)  # Windows, or a file system without flock
    lock = tmp_path / ".enrich.lock"

    def plant(pid: int, host: str) -> None:
        lock.write_text(json.dumps({"pid": pid, "host": host, "started": 1.0, "command": "x"}))

    plant(os.getppid(), socket.gethostname())  # alive on this host
    with pytest.raises(L.LockedError, match=f"pid {os.getppid()}"):
        with L.folder_lock(tmp_path):
            pass
    plant(dead_pid(), "another-host")  # gone here, but maybe alive there: never broken
    with pytest.raises(L.LockedError, match="another-host"):
        with L.folder_lock(tmp_path):
            pass
    plant(dead_pid(), socket.gethostname())  # gone: stale, taken over
    with L.folder_lock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "no longer running" in capsys.readouterr().err


def test_a_failed_lock_leaves_no_folder_it_made(tmp_path: Path, hold) -> None:
    from enrich._lock import LockedError, locked

    h = hold(tmp_path / "a" / ".x.lock")
    with pytest.raises(LockedError):
        with locked(tmp_path / "a" / ".x.lock"):
            pass
    h.release()
    with pytest.raises(RuntimeError), locked(tmp_path / "new" / "deeper" / ".x.lock"):
        raise RuntimeError
    assert not (tmp_path / "new").exists()


def test_two_ranks_on_one_output_the_second_is_refused(
    tmp_path: Path, emb_npz: Path, hold, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "order.csv"
    h = hold(out.parent / ".order.enrich.lock", "enrich rank -o order.csv")
    assert main(["rank", "-e", str(emb_npz), "-o", str(out)]) == 2
    line = one_error_line(capsys)
    assert f"pid {h.proc.pid}" in line and "enrich rank -o order.csv" in line
    assert not out.exists() and not out.with_suffix(".json").exists()
    h.release()
    assert main(["rank", "-e", str(emb_npz), "-o", str(out)]) == 0


def test_two_embeds_on_one_workspace_the_second_is_refused(
    tmp_path: Path, hold, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from enrich.workspace import Workspace

    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(0)
    for k in range(6):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(src / f"{k}.png")
    ws = Workspace.create(tmp_path / "ws")
    h = hold(ws.path / ".enrich.lock", "enrich embed imgs -w ws")
    argv = ["embed", str(src), "-w", str(ws.path), "--embedder", "pixels", "--latent-dim", "2"]
    assert main(argv) == 2
    assert f"pid {h.proc.pid}" in one_error_line(capsys)
    assert not ws.has_embeddings() and not ws.has_manifest()
    h.release()
    assert main(argv) == 0


def test_results_with_a_repeated_model_count_it_once(tmp_path: Path) -> None:
    from enrich.evaluate.results import DuplicateResultsWarning
    from enrich.evaluate.stats import read_results

    rows = [
        {
            "strategy": s,
            "init": 0,
            "size": 5,
            "fraction": 0.5,
            "model": m,
            "seed": 10 + m,
            "metric": "auc",
            "value": 0.7 + 0.01 * m,
            "status": "ok",
            "error": "",
            "wall_s": 1.0,
        }
        for s in ("enrich", "random")
        for m in range(3)
    ]
    table = pd.DataFrame(rows + rows[:4])  # a second run appended four of them again
    table.to_csv(tmp_path / "results.csv", index=False)
    with pytest.warns(DuplicateResultsWarning, match="4 row"):
        got = read_results(tmp_path)
    assert len(got) == 6
    assert got.groupby("strategy").size().tolist() == [3, 3]


# ---------------------------------------------------------------- item 4/10/16: writes
def test_a_link_planted_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    from enrich._atomic import atomic_path

    victim = tmp_path / "victim.txt"
    victim.write_text("secret")
    target = tmp_path / "order.csv"
    with atomic_path(target) as tmp:
        try:  # an attacker who can create files in the folder, but not delete ours
            os.symlink(victim, tmp)
        except FileExistsError:
            pass
        tmp.write_text("new")
    assert victim.read_text() == "secret"
    assert not target.is_symlink() and target.read_text() == "new"


def test_a_write_that_wrote_nothing_keeps_the_old_file(tmp_path: Path) -> None:
    from enrich._atomic import atomic_path

    target = tmp_path / "e.npz"
    target.write_bytes(b"old")
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_path(target) as tmp:
            (tmp.parent / (tmp.name + ".npz")).write_bytes(b"elsewhere")  # as np.savez might
    assert target.read_bytes() == b"old"


def test_writes_are_fsynced_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from enrich._atomic import write_text

    synced: list[bool] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_text(tmp_path / "a.json", "{}")
    assert synced == [False, True]  # the file, then its folder


def test_temporaries_of_killed_writes_are_removed(tmp_path: Path) -> None:
    from enrich._atomic import write_text

    target = tmp_path / "order.csv"
    dead = tmp_path / f".order.csv.{dead_pid()}.0123456789abcdef.csv"
    legacy = tmp_path / ".order.csv.ab_cd123.csv.tmp"  # mkstemp's, before this fix
    live = tmp_path / f".order.csv.{os.getppid()}.0123456789abcdef.csv"
    other = tmp_path / ".other.csv.ab_cd123.csv"
    users = tmp_path / ".order.csv.mybackup"  # not a temporary of ours: never touched
    for p in (dead, legacy, live, other, users):
        p.write_text("half")
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    write_text(target, "whole")
    assert not dead.exists() and not legacy.exists()
    assert live.exists() and other.exists() and users.exists()
    assert target.read_text() == "whole"


def test_a_full_disk_names_the_output_not_the_temporary(tmp_path: Path) -> None:
    from enrich._atomic import atomic_path

    target = tmp_path / "order.csv"
    with pytest.raises(OSError, match=r"order\.csv") as info:
        with atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_a_permission_error_names_the_output(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    emb_npz: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import enrich._atomic as A

    real = os.open

    def denied(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if Path(str(path)).name.startswith(".order.csv.") and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(A.os, "open", denied)
    out = tmp_path / "order.csv"
    assert main(["rank", "-e", str(emb_npz), "-o", str(out)]) == 1
    line = one_error_line(capsys)
    assert f"Permission denied: '{out}'" in line and ".order.csv." not in line


def test_a_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    from enrich._atomic import write_text

    target = tmp_path / "shared.csv"
    target.write_text("old")
    os.chmod(target, 0o640)
    write_text(target, "new")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    fresh = tmp_path / "fresh.csv"
    write_text(fresh, "x")
    assert stat.S_IMODE(os.stat(fresh).st_mode) & 0o044  # not 0600: readable like any file


def test_out_may_not_be_the_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    e = tmp_path / "e.npy"
    np.save(e, clustered(30, 4, seed=0))
    before = e.read_bytes()
    assert main(["rank", "-e", str(e), "-o", str(e)]) == 2
    assert "is also the input" in one_error_line(capsys)
    assert e.read_bytes() == before


def test_out_may_not_be_a_workspace_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from enrich.embeddings import Embeddings
    from enrich.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    ids = np.array([f"{k}.png" for k in range(20)])
    ws.write_embeddings(Embeddings(ids, clustered(20, 4, seed=0)))
    ws.write_manifest(pd.DataFrame({"id": ids, "source_path": [f"/d/{i}" for i in ids]}))
    before = ws.manifest_path.read_bytes()
    for out in (ws.path / "manifest.parquet", ws.path / "model" / "order.csv"):
        assert main(["rank", "-w", str(ws.path), "-o", str(out)]) == 2
        assert "workspace's own" in one_error_line(capsys)
    assert ws.manifest_path.read_bytes() == before and not ws.model_dir.exists()
    assert main(["redundancy", "-w", str(ws.path), "-o", str(ws.path)]) == 2
    assert "is a workspace" in one_error_line(capsys)


@pytest.mark.parametrize("kind", ["fifo", "symlink", "socket", "device"])
def test_out_must_be_a_regular_file(
    kind: str, tmp_path: Path, emb_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "order.csv"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    if kind == "fifo":
        os.mkfifo(out)
    elif kind == "symlink":
        out.symlink_to(victim)
    elif kind == "socket":
        import socket as sk

        server = sk.socket(sk.AF_UNIX)
        server.bind(str(out))
        server.close()
    else:  # never aim a test at a real device: a broken build would replace it
        try:
            os.mknod(out, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
        except PermissionError:
            pytest.skip("creating a device node needs CAP_MKNOD")
    assert main(["rank", "-e", str(emb_npz), "-o", str(out)]) == 2
    line = one_error_line(capsys)
    expected = {"fifo": "FIFO", "symlink": "symbolic link", "socket": "socket", "device": "device"}
    assert expected[kind] in line
    assert victim.read_text() == "keep me"
    if kind != "symlink":  # the write layer refuses too, for any caller
        from enrich._atomic import write_text

        with pytest.raises(OSError, match="not a regular file"):
            write_text(out, "x")
    mode = os.lstat(out).st_mode
    assert not stat.S_ISREG(mode)  # left as it was
    assert {
        "fifo": stat.S_ISFIFO,
        "symlink": stat.S_ISLNK,
        "socket": stat.S_ISSOCK,
        "device": stat.S_ISCHR,
    }[kind](mode)


def test_out_json_cannot_let_the_sidecar_replace_the_order(
    tmp_path: Path, emb_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.json"
    assert main(["rank", "-e", str(emb_npz), "-o", str(out)]) == 2
    assert "would be the same file" in one_error_line(capsys)
    assert not out.exists()


def test_report_out_may_not_replace_the_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.csv").write_text("strategy,size,metric,value\nenrich,5,auc,0.8\n")
    before = (run / "results.csv").read_bytes()
    assert main(["report", str(run), "--out", str(run / "results.csv")]) == 2
    assert "is also the input" in one_error_line(capsys)
    assert (run / "results.csv").read_bytes() == before


# ------------------------------------------------------------- item 5: formula injection
HOSTILE = ['=HYPERLINK("http://x","y")', "=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "\tx"]


def test_order_csv_escapes_formulas_and_reads_them_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv

    from enrich.embeddings import Embeddings
    from enrich.workspace import Workspace

    ids = np.array(HOSTILE + [f"ok{k}.png" for k in range(20)])
    ws = Workspace.create(tmp_path / "ws")
    ws.write_embeddings(Embeddings(ids, clustered(len(ids), 4, seed=0)))
    patients = ["=2+3"] * len(ids)
    ws.write_manifest(
        pd.DataFrame({"id": ids, "source_path": [f"/d/{i}" for i in ids], "patient_id": patients})
    )
    out = tmp_path / "order.csv"
    assert main(["rank", "-w", str(ws.path), "-o", str(out), "--initial", "3"]) == 0
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for col in ("id", "path", "patient_id"):
            assert r[col][:1] not in ("=", "+", "-", "@", "\t"), r
    assert {r["id"] for r in rows} == {("'" + i if i[0] in "=+-@\t" else i) for i in ids}
    assert all(float(r["max_similarity_at_pick"]) <= 1 for r in rows if r["max_similarity_at_pick"])
    # ours read back: --labeled with the escaped order.csv resolves the real ids
    labeled = tmp_path / "labeled.csv"
    lines = out.read_text(encoding="utf-8").splitlines()
    labeled.write_text("\n".join(lines[:8]) + "\n", encoding="utf-8")  # header + 7 rows
    out2 = tmp_path / "order2.csv"
    assert main(["rank", "-w", str(ws.path), "--labeled", str(labeled), "-o", str(out2)]) == 0
    capsys.readouterr()
    from enrich._csv import read_csv

    first = read_csv(out, dtype={"id": str})
    second = read_csv(out2, dtype={"id": str})
    assert set(second["id"][second["initial"]]) == set(first["id"][:7])
    assert set(first["id"]) == set(ids)


def test_redundancy_and_skipped_csv_escape_formulas(tmp_path: Path) -> None:
    from enrich.workspace import Workspace

    e = tmp_path / "e.npz"
    ids = np.array([*HOSTILE, "a", "b"])
    X = clustered(len(ids), 4, seed=2)
    X[0] = -X[1]  # a negative similarity stays a number
    np.savez(e, ids=ids, vectors=X)
    assert main(["redundancy", "-e", str(e), "-o", str(tmp_path / "red")]) == 0
    text = (tmp_path / "red" / "redundancy.csv").read_text(encoding="utf-8")
    table = pd.read_csv(tmp_path / "red" / "redundancy.csv")
    assert pd.api.types.is_float_dtype(table["max_similarity"])
    assert pd.api.types.is_integer_dtype(table["duplicate_group"])
    assert (table["duplicate_group"] == -1).any()
    assert "\n=" not in text and ",=" not in text and "\n@" not in text
    ws = Workspace.create(tmp_path / "ws")
    skipped = pd.DataFrame({"source_path": ["=cmd|' /C calc'!A0", "-x.png"], "reason": ["@", "ok"]})
    ws.write_skipped(skipped)
    raw = ws.skipped_path.read_text(encoding="utf-8")
    assert "\n=" not in raw and "\n'=cmd" in raw
    pd.testing.assert_frame_equal(ws.skipped(), skipped)


def test_a_failed_model_error_quoting_a_formula_is_escaped(tmp_path: Path) -> None:
    from enrich.evaluate.results import ResultsLog

    log = ResultsLog(tmp_path / "results.csv")
    log.append(
        {
            "strategy": "enrich",
            "init": 0,
            "size": 1,
            "epochs": -1,
            "model": 0,
            "value": -0.5,
            "status": "failed",
            "error": "=cmd|' /C calc'!A0: not found",
        }
    )
    row = (tmp_path / "results.csv").read_text(encoding="utf-8").splitlines()[1]
    assert ",'=cmd|" in row and ",-1," in row and ",-0.5," in row
    from enrich.evaluate.stats import read_results

    log.append(
        {
            "strategy": "enrich",
            "init": 0,
            "size": 3,
            "model": 0,
            "value": 0.5,
            "metric": "auc",
            "status": "ok",
        }
    )
    back = read_results(tmp_path)
    assert back["error"].iloc[0] == "=cmd|' /C calc'!A0: not found"


# ------------------------------------------------------------- item 9: workspace creation
def test_a_failure_while_creating_a_workspace_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import enrich.workspace as W

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(W, "write_json", disk_full)
    with pytest.raises(OSError):
        W.Workspace.create(tmp_path / "ws")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert W.Workspace.create(tmp_path / "ws").is_workspace()


def test_a_half_created_workspace_is_recognised_and_completed(tmp_path: Path) -> None:
    from enrich.workspace import Workspace

    ws = tmp_path / "ws"
    (ws / "runs").mkdir(parents=True)  # what a killed create of an older version left
    stale = ws / f".workspace.json.{dead_pid()}.0123456789abcdef.json"
    stale.write_text("{")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    Workspace(ws).check_creatable()
    assert Workspace.create(ws).is_workspace()
    assert not stale.exists()
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"x")
    with pytest.raises(EnrichError, match="not an enrich workspace"):
        Workspace.create(tmp_path / "imgs")


# ---------------------------------------------------------------------- item 12: seeds
def test_a_negative_seed_is_one_line_and_leaves_no_workspace(
    tmp_path: Path, emb_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import enrich
    from enrich.embed.api import embed_sources

    assert main(["rank", "-e", str(emb_npz), "-o", str(tmp_path / "o.csv"), "--seed", "-1"]) == 2
    assert "--seed -1: expected a whole number >= 0" in one_error_line(capsys)
    src = tmp_path / "imgs"
    src.mkdir()
    ws = tmp_path / "ws"
    assert main(["embed", str(src), "-w", str(ws), "--seed", "-3"]) == 2
    assert "--seed -3" in one_error_line(capsys)
    assert not ws.exists()
    with pytest.raises(EnrichError, match="seed=-1"):
        enrich.rank(clustered(20, 4, seed=0), seed=-1)
    with pytest.raises(EnrichError, match="seed=-2"):
        embed_sources([src], ws, seed=-2, embedder="pixels")
    assert not ws.exists()


def test_a_failed_first_embed_leaves_no_workspace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "empty"
    src.mkdir()
    ws = tmp_path / "ws"
    assert main(["embed", str(src), "-w", str(ws), "--embedder", "pixels"]) == 2
    one_error_line(capsys)
    assert not ws.exists()
    ws.mkdir()  # a folder the user made is kept, empty
    assert main(["embed", str(src), "-w", str(ws), "--embedder", "pixels"]) == 2
    one_error_line(capsys)
    assert ws.is_dir() and list(ws.iterdir()) == []


# -------------------------------------------------------------------- item 15: --labeled
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id\nimg_001.png\nimg_002.png\n", ["img_001.png", "img_002.png"]),
        ("\ufeffimg_001.png\nimg_002.png\n", ["img_001.png", "img_002.png"]),
        ("\ufeffid\nimg_001.png\n", ["img_001.png"]),
        ('id,label\n"a,b.png",1\nimg_002.png,0\n', ["a,b.png", "img_002.png"]),
        ('"a,b.png"\n#scan.png\n', ["a,b.png", "#scan.png"]),
        ("rank,id,max_similarity_at_pick\n0,'=x.png,\n1,'-y.png,0.3\n", ["=x.png", "-y.png"]),
        ("path\n/d/a.png\n\n", ["/d/a.png"]),
    ],
)
def test_labeled_files_are_read_as_csv(tmp_path: Path, text: str, expected: list[str]) -> None:
    from enrich.cli._common import read_id_list

    p = tmp_path / "labeled.csv"
    p.write_text(text, encoding="utf-8")
    assert read_id_list(p) == expected


def test_labeled_errors_name_the_id_and_line(
    tmp_path: Path, emb_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "labeled.txt"
    p.write_text("img_001.png\nimg_002.png\n\nimg_001.png\n")
    out = str(tmp_path / "o.csv")
    assert main(["rank", "-e", str(emb_npz), "--labeled", str(p), "-o", out]) == 2
    assert "line 4: id 'img_001.png' repeats line 1" in one_error_line(capsys)
    p.write_text("img_001.png\n#img_999.png\n")
    assert main(["rank", "-e", str(emb_npz), "--labeled", str(p), "-o", out]) == 2
    assert "#img_999.png (line 2)" in one_error_line(capsys)


# ----------------------------------------------------------------------- item 16: smaller
def test_conflicting_manifest_rows_are_an_error_naming_the_image(tmp_path: Path) -> None:
    from PIL import Image

    from enrich.io import discover

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.ones((8, 8), np.uint8)).save(tmp_path / "b.png")
    m = tmp_path / "m.csv"
    m.write_text("path,label\na.png,0\nb.png,1\na.png,1\n")
    with pytest.raises(EnrichError, match=r"conflicting rows for .*a\.png: label '0' and '1'"):
        discover([m])
    m.write_text("path,label\na.png,0\nb.png,1\na.png,0\n")  # a plain repeat is fine
    assert discover([m]).manifest["id"].tolist() == ["a.png", "b.png"]
