"""`--engine dask`: the same results as the in-process engine, on a real 2-worker LocalCluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")

from _worker_faults import DieOnce, pixels_setup
from enrich.cli import main
from enrich.distributed import parse_scheduler
from enrich.errors import EnrichError
from enrich.redundancy import redundancy
from enrich.select import rank

from _data import clustered
from _reference import unit64

ROOT = Path(__file__).resolve().parents[1]


def tie_free(n: int, d: int, seed: int) -> np.ndarray:
    # Clustered data with no two images at exactly the same angle: the results compared here
    # must not hinge on how float32 rounding breaks an exact tie.
    X = clustered(n, d, seed=seed)
    U = unit64(X)
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    top2 = np.sort(S, axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0] > 1e-6).all() or seed < 0, "pick another seed"
    return X


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- options
def test_cli_does_not_import_dask() -> None:
    code = (
        "import sys, argparse\n"
        "import enrich.cli, enrich.cli.rank, enrich.cli.redundancy, enrich.distributed\n"
        "import enrich.cli.next\n"
        "for m in (enrich.cli.rank, enrich.cli.redundancy, enrich.cli.next):\n"
        "    m.add_arguments(argparse.ArgumentParser())\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dask', 'distributed', 'dask_jobqueue', 'zarr'))\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("local", "local", None),
        ("local:3", "local", 3),
        ("slurm", "slurm", None),
        ("slurm:queue.yaml", "slurm", "queue.yaml"),
        ("tcp://10.1.2.3:8786", "address", "tcp://10.1.2.3:8786"),
        ("node7:8786", "address", "node7:8786"),
    ],
)
def test_parse_scheduler(text: str, kind: str, value: object) -> None:
    spec = parse_scheduler(text)
    assert spec.kind == kind
    assert {"local": spec.n_workers, "slurm": spec.config, "address": spec.address}[kind] == value
    assert str(spec) == text


@pytest.mark.parametrize("text", ["local:0", "local:two", "local:-1", " "])
def test_parse_scheduler_rejects(text: str) -> None:
    with pytest.raises(EnrichError, match="--scheduler"):
        parse_scheduler(text)


def test_unreachable_scheduler_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import enrich.distributed._client as mod

    monkeypatch.setattr(mod, "CONNECT_TIMEOUT", "1s")
    np.save(tmp_path / "e.npy", clustered(50, 4, seed=0))
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    argv = ["rank", "-e", str(tmp_path / "e.npy"), "-o", str(tmp_path / "o.csv")]
    assert main([*argv, "--scheduler", address]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"cannot reach the Dask scheduler at {address}" in err
    assert not (tmp_path / "o.csv").exists()


def test_engine_option_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "e.npy", clustered(50, 4, seed=0))
    base = ["rank", "-e", str(tmp_path / "e.npy"), "-o", str(tmp_path / "o.csv")]
    for extra, match in [
        (["--engine", "local", "--scheduler", "local:2"], "--scheduler needs --engine dask"),
        (["--mode", "composable"], "--mode composable needs --engine dask"),
        (["--mode", "sharded"], "--mode sharded needs --engine dask"),
        (["--shards", "2"], "--shards needs --engine dask"),
        (["--scheduler", "local:x"], "local:N"),
    ]:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, err


# --------------------------------------------------------------------------- SLURM
def test_slurm_config_makes_the_job_script(tmp_path: Path) -> None:
    from enrich.distributed._client import slurm_cluster

    cfg = tmp_path / "slurm.yaml"
    cfg.write_text(
        "queue: short\naccount: radiology\ncores: 8\nprocesses: 2\nmemory: 32GB\n"
        "walltime: '02:00:00'\njobs: 4\njob_extra_directives: ['--gres=gpu:1']\n"
        "start_timeout: 90\n"
    )
    cluster, jobs, start_timeout = slurm_cluster(str(cfg))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert jobs == 4 and start_timeout == 90.0
    for line in (
        "#SBATCH -p short",
        "#SBATCH -A radiology",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=30G",
        "#SBATCH -t 02:00:00",
        "#SBATCH --gres=gpu:1",
    ):
        assert line in script, script
    assert "--nworkers 2" in script and "--nthreads 4" in script


def test_slurm_without_config_or_dask_settings_says_what_is_missing() -> None:
    import dask

    from enrich.distributed._client import slurm_cluster

    with (
        dask.config.set({"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}),
        pytest.raises(EnrichError, match=r"jobqueue\.slurm configuration.*cores and memory"),
    ):
        slurm_cluster(None)


def test_documented_slurm_example_is_valid() -> None:
    from enrich.distributed._client import slurm_cluster

    cluster, jobs, _ = slurm_cluster(str(ROOT / "docs" / "examples" / "slurm.yaml"))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert jobs == 4 and "#SBATCH -p short" in script and "#SBATCH --constraint=avx2" in script
    assert "source ~/venvs/enrich/bin/activate" in script
    assert "distributed.cli.dask_worker" in script or "dask worker" in script


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("jobs: 0\n", "jobs=0"),
        ("qeue: short\n", "unknown key"),
        ("- a\n", "YAML mapping"),
        ("start_timeout: 0\n", "start_timeout=0"),
        ("start_timeout: soon\n", "start_timeout='soon'"),
    ],
)
def test_slurm_config_rejects(tmp_path: Path, text: str, match: str) -> None:
    from enrich.distributed._client import slurm_options

    cfg = tmp_path / "slurm.yaml"
    cfg.write_text(text)
    with pytest.raises(EnrichError, match=match):
        slurm_options(cfg)
    with pytest.raises(EnrichError, match="no such SLURM config"):
        slurm_options(tmp_path / "missing.yaml")


def _fake_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stderr: str, rc: int) -> Path:
    """An `sbatch` on PATH that records its arguments and answers like SLURM's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.args"
    exe = bin_dir / "sbatch"
    exe.write_text(f"#!/bin/sh\necho \"$@\" > {log}\nprintf '%s\\n' '{stderr}' >&2\nexit {rc}\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_slurm_refusing_the_job_is_one_line_naming_the_reason(tmp_path, monkeypatch) -> None:
    # A wrong partition used to leave `enrich` waiting for workers forever after sbatch's error.
    from enrich.distributed._client import check_sbatch, slurm_cluster

    log = _fake_sbatch(
        tmp_path,
        monkeypatch,
        "sbatch: error: Batch job submission failed: Invalid partition name specified",
        1,
    )
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text("queue: nosuch\ncores: 1\nmemory: 1GB\n")
    cluster, _, _ = slurm_cluster(str(cfg))
    try:
        with pytest.raises(
            EnrichError, match=r"SLURM refused .*Invalid partition name.*slurm\.yaml"
        ):
            check_sbatch(cluster, cfg)
    finally:
        cluster.close()
    assert log.read_text().startswith("--test-only ")


def test_slurm_accepting_the_job_passes_the_check(tmp_path, monkeypatch) -> None:
    from enrich.distributed._client import check_sbatch, slurm_cluster

    _fake_sbatch(tmp_path, monkeypatch, "sbatch: Job 7 to start at 2026-12-02T05:00:00", 0)
    cluster, _, _ = slurm_cluster(_write(tmp_path, "cores: 1\nmemory: 1GB\n"))
    try:
        check_sbatch(cluster, "slurm.yaml")  # no error
    finally:
        cluster.close()


def test_no_sbatch_on_the_machine_is_one_line(tmp_path, monkeypatch) -> None:
    from enrich.distributed._client import check_sbatch, slurm_cluster

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    cluster, _, _ = slurm_cluster(_write(tmp_path, "cores: 1\nmemory: 1GB\n"))
    try:
        with pytest.raises(EnrichError, match="no `sbatch` on this machine"):
            check_sbatch(cluster, "slurm.yaml")
    finally:
        cluster.close()


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "slurm.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.skipif(
    os.environ.get("ENRICH_CHECK_SLURM") != "1" or shutil.which("sbatch") is None,
    reason="a real SLURM cluster: scripts/check_slurm.sh starts one and sets ENRICH_CHECK_SLURM=1",
)
def test_real_slurm_gives_the_local_redundancy_and_order(tmp_path: Path) -> None:
    """`--scheduler slurm:FILE` on a real SLURM (slurmctld + slurmd): workers start as SLURM
    jobs and the outputs are byte-identical to the in-process engine."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 16)).astype(np.float32)
    X[10] = X[20]  # an exact tie
    emb = tmp_path / "e.npz"
    np.savez(emb, ids=np.array([f"i{i}" for i in range(len(X))]), vectors=X)
    cfg = _write(
        tmp_path,
        f"queue: {os.environ.get('ENRICH_SLURM_QUEUE', 'debug')}\ncores: 1\nprocesses: 1\n"
        "memory: 2GB\nwalltime: '00:10:00'\njobs: 2\nstart_timeout: 120\n"
        f"log_directory: {tmp_path / 'slurm-logs'}\n",  # SLURM's job logs, not in the cwd
    )
    slurm = ["--engine", "dask", "--scheduler", f"slurm:{cfg}"]
    runs = {
        "redundancy.csv": (["redundancy", "-e", str(emb), "--out"], "{}"),
        "order.csv": (["rank", "-e", str(emb), "--seed", "0", "--out"], "{}/order.csv"),
    }
    for name, (cmd, out) in runs.items():
        written = []
        for engine, extra in (("local", []), ("slurm", slurm)):
            dest = out.format(tmp_path / f"{name}_{engine}")
            done = subprocess.run(
                [sys.executable, "-m", "enrich", *cmd, dest, *extra],
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, done.stderr
            written.append(tmp_path / f"{name}_{engine}" / name)
        assert written[0].read_bytes() == written[1].read_bytes()


# --------------------------------------------------------------------------- redundancy
@pytest.mark.parametrize("block", [32, 100])
def test_redundancy_on_dask_is_the_local_result(client, block: int) -> None:
    from enrich.distributed.redundancy import redundancy as on_dask

    X = tie_free(530, 12, seed=3)
    X = np.vstack([X, X[::9] * 1.01 + 0.02])  # near-duplicates that chain across tiles
    ticks: list[int] = []
    got = on_dask(X, client, group_threshold=0.97, block=block, progress=ticks.append)
    want = redundancy(X, group_threshold=0.97, block=block)
    n_tiles = -(-len(X) // block)
    assert sum(ticks) == n_tiles * (n_tiles + 1) // 2
    assert got.info["engine"] == "dask" and got.info["workers"] == 2 and got.info["tasks"] > 2
    np.testing.assert_array_equal(got.max_similarity, want.max_similarity)
    np.testing.assert_array_equal(got.nearest, want.nearest)
    np.testing.assert_array_equal(got.group, want.group)
    assert len(want.groups()) > 1  # the comparison covered real groups


@pytest.mark.parametrize("method", ["representative", "components"])
def test_redundancy_on_dask_with_exact_duplicates(client, method: str) -> None:
    # Exact copies are ties; both engines break them on the float64 reference similarity,
    # the same way on every CPU and for any split of the tiles, so they must agree.
    from enrich.distributed.redundancy import redundancy as on_dask

    X = clustered(400, 12, seed=2)
    X = np.vstack([X, X[::7], X[5::11] * 3.0, X[::9] * 1.01 + 0.02])
    for block in (32, 100):
        got = on_dask(X, client, group_threshold=0.97, group_method=method, block=block)
        want = redundancy(X, group_threshold=0.97, group_method=method, block=block)
        np.testing.assert_array_equal(got.max_similarity, want.max_similarity)
        np.testing.assert_array_equal(got.nearest, want.nearest)
        np.testing.assert_array_equal(got.group, want.group)
        assert len(want.groups()) > 5


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"group_threshold": 2}, "group_threshold=2: expected a similarity"),
        ({"group_method": "cliques"}, "group_method='cliques': expected one of"),
        ({"block": 0}, "block=0: expected a whole number"),
        ({"block": 2.5}, "block=2.5: expected a whole number"),
    ],
)
def test_redundancy_on_dask_rejects_what_in_process_rejects(client, option, match) -> None:
    from enrich.distributed.redundancy import redundancy as on_dask

    X = clustered(20, 4, seed=1)
    for compute in (redundancy, lambda X, **kw: on_dask(X, client, **kw)):
        with pytest.raises(EnrichError, match=match):
            compute(X, **option)


@pytest.mark.slow
def test_killing_a_worker_mid_run_changes_nothing(client) -> None:
    import threading
    import time

    from enrich.distributed.redundancy import redundancy as on_dask

    X = clustered(12000, 64, seed=6)
    out: dict[str, object] = {}
    run = threading.Thread(
        target=lambda: out.setdefault("r", on_dask(X, client, group_threshold=0.97, block=512))
    )
    run.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        busy = [w for w, tasks in client.processing().items() if tasks]
        victim = busy[0] if busy else None
        time.sleep(0.05)
    assert victim is not None and run.is_alive()
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    killed_mid_run = run.is_alive()
    run.join(timeout=300)
    assert killed_mid_run and not run.is_alive() and "r" in out
    got = out["r"]
    want = redundancy(X, group_threshold=0.97, block=512)
    # (too large for the tie-free check: values compared to float32 precision, groups exactly)
    np.testing.assert_allclose(got.max_similarity, want.max_similarity, atol=1e-6)
    np.testing.assert_array_equal(got.group, want.group)
    assert len(want.groups()) > 1
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it, for the next tests


# --------------------------------------------------------------------------- rank
def test_rank_exact_on_dask_is_the_local_order(client) -> None:
    from enrich.distributed.rank import rank as on_dask

    X = clustered(600, 10, seed=4)
    got = on_dask(X, client, initial=0.02, budget=200, seed=7)
    want = rank(X, initial=0.02, budget=200, seed=7)
    np.testing.assert_array_equal(got.order, want.order)
    np.testing.assert_array_equal(got.max_similarity, want.max_similarity)
    assert got.info["engine"] == "dask" and got.info["approximate"] is False


def test_rank_exact_refuses_what_does_not_fit_one_worker(client, monkeypatch) -> None:
    import enrich.distributed.rank as mod

    monkeypatch.setattr(mod, "_EXACT_MEMORY_FACTOR", 1e9)
    with pytest.raises(EnrichError, match="--mode sharded"):
        mod.rank(clustered(100, 4, seed=0), client, budget=5)


def brute_covering(X: np.ndarray, chosen: np.ndarray) -> float:
    U = unit64(X)
    return float((U @ U[chosen].T).max(axis=1).min())


@pytest.mark.parametrize("seed", [0, 1])
def test_rank_composable_is_a_valid_labeled_approximation(client, seed: int) -> None:
    from enrich.distributed.rank import covering
    from enrich.distributed.rank import rank as on_dask

    X = clustered(800, 8, seed=seed)
    got = on_dask(X, client, mode="composable", initial=3, budget=40, seed=seed, n_shards=3)
    exact = rank(X, initial=3, budget=40, seed=seed)
    # the same initial set, first; then 40 distinct other images
    np.testing.assert_array_equal(got.order[:3], exact.order[:3])
    assert len(got.order) == 43 and len(set(got.order.tolist())) == 43
    assert got.info["approximate"] is True and got.info["n_shards"] == 3
    assert got.info["coreset_size"] <= 3 + 3 * 40
    # each pick's reported similarity is its true max similarity to the images before it
    U = unit64(X)
    for t in range(3, 43):
        prev = got.order[:t]
        assert abs((U[got.order[t]] @ U[prev].T).max() - got.max_similarity[t]) < 2e-6
    # the covering radius it reports is the true one
    sim = brute_covering(X, got.order)
    assert abs(got.info["covering_similarity"] - sim) < 2e-6
    assert abs(got.info["covering_radius"] - np.sqrt(2 - 2 * sim)) < 1e-5
    # and the exact order's radius, by the same function, agrees with brute force too
    ex = covering(X, exact.order, client)
    assert abs(ex["covering_similarity"] - brute_covering(X, exact.order)) < 2e-6


def test_rank_composable_needs_a_budget(client) -> None:
    from enrich.distributed.rank import rank as on_dask

    with pytest.raises(EnrichError, match="needs a --budget"):
        on_dask(clustered(100, 4, seed=0), client, mode="composable")


def test_rank_composable_sends_each_worker_only_its_shard(client, monkeypatch) -> None:
    # The coreset exists for data larger than one worker: no task may receive all N rows.
    # Every array sent to the workers is recorded; none may be more than a shard plus the
    # initial images (or the chosen images, for the radius pass), and nothing is broadcast
    # but the chosen rows. The order is still greedy per shard, then on the union.
    from enrich.distributed.rank import rank as on_dask
    from enrich.select._greedy import greedy_order

    X = clustered(800, 8, seed=5)
    sent: list[tuple[int, bool]] = []
    scatter = client.scatter

    def spy(data, *a, **kw):
        for x in data:
            if isinstance(x, np.ndarray) and x.ndim == 2:
                sent.append((len(x), bool(kw.get("broadcast"))))
        return scatter(data, *a, **kw)

    monkeypatch.setattr(client, "scatter", spy)
    got = on_dask(X, client, mode="composable", initial=3, budget=20, seed=5, n_shards=4)
    init = got.order[:3]
    shard = -(-(800 - 3) // 4)  # the largest shard of the other 797 images
    assert sent and max(n for n, _ in sent) <= shard + 3, sent
    assert all(n <= len(got.order) for n, b in sent if b), sent  # only the picks broadcast
    assert sum(n for n, b in sent if not b) <= 2 * (800 + 4 * 3)  # the two passes, no more
    # the same order as greedy on each shard (over all rows), then on the union
    rest = np.setdiff1d(np.arange(800), init)
    union = [init]
    for s in np.array_split(rest, 4):
        loc = np.concatenate([init, s])
        union.append(loc[greedy_order(X[loc], np.arange(3, dtype=np.int64), 20)[0]])
    u = np.concatenate([init, np.sort(np.concatenate(union[1:]))])
    want = u[greedy_order(X[u], np.arange(3, dtype=np.int64), 20)[0]]
    np.testing.assert_array_equal(got.order[3:], want)


# --------------------------------------------------------------------------- the CLI
def _emb(tmp_path: Path) -> Path:
    X = tie_free(700, 8, seed=5)
    X = np.vstack([X, X[::13] * 1.02 + 0.01])
    ids = np.array([f"study_{i // 10:03d}/img_{i:04d}.png" for i in range(len(X))])
    p = tmp_path / "emb.npz"
    np.savez(p, ids=ids, vectors=X)
    return p


def test_cli_redundancy_dask_matches_local(client, tmp_path: Path) -> None:
    emb = _emb(tmp_path)
    base = ["redundancy", "-e", str(emb), "--threshold", "0.97"]
    assert main([*base, "-o", str(tmp_path / "local")]) == 0
    address = client.scheduler.address
    assert main([*base, "-o", str(tmp_path / "dask"), "--scheduler", address]) == 0
    a = (tmp_path / "local" / "redundancy.csv").read_bytes()
    b = (tmp_path / "dask" / "redundancy.csv").read_bytes()
    assert a == b
    assert pd.read_csv(tmp_path / "dask" / "redundancy.csv")["duplicate_group"].max() >= 1
    summary = json.loads((tmp_path / "dask" / "summary.json").read_text())
    assert summary["datasets"]["emb"]["engine"]["scheduler"] == address


@pytest.mark.slow
def test_cli_rank_dask_local_cluster_matches_local(tmp_path: Path) -> None:
    emb = _emb(tmp_path)
    base = ["rank", "-e", str(emb), "--initial", "0.01", "--seed", "3"]
    assert main([*base, "-o", str(tmp_path / "local.csv")]) == 0
    assert main([*base, "-o", str(tmp_path / "dask.csv"), "--scheduler", "local:2"]) == 0
    assert (tmp_path / "local.csv").read_bytes() == (tmp_path / "dask.csv").read_bytes()
    side = json.loads((tmp_path / "dask.json").read_text())
    assert side["scheduler"] == "local:2" and side["engine"]["mode"] == "exact"
    assert (
        main(
            [
                *base,
                "-o",
                str(tmp_path / "c.csv"),
                "--scheduler",
                "local:2",
                "--mode",
                "composable",
                "--budget",
                "50",
            ]
        )
        == 0
    )
    side = json.loads((tmp_path / "c.json").read_text())
    assert side["method"].startswith("APPROXIMATE") and side["engine"]["approximate"] is True
    assert 0 < side["engine"]["covering_radius"] < 2
    assert len(pd.read_csv(tmp_path / "c.csv")) == side["n_initial"] + 50


# --------------------------------------------------------------------------- embedding
DATA = ROOT / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 real chest X-rays as PNGs in two sub-folders, plus one corrupt PNG."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pngs")
    with np.load(DATA) as data:
        images = data["train_images"][::70][:40]
    for k, im in enumerate(images):
        sub = root / ("normal" if k % 2 else "other")
        sub.mkdir(exist_ok=True)
        Image.fromarray(im).save(sub / f"x{k:03d}.png")
    (root / "other" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    # passes discovery (a good header), fails when read: a read-time skip, on a worker
    whole = (root / "normal" / "x001.png").read_bytes()
    (root / "other" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    return root


def test_file_shards_keep_files_whole() -> None:
    from enrich.distributed.embed import file_shards

    rng = np.random.default_rng(0)
    paths = np.repeat([f"f{i}" for i in range(30)], rng.integers(1, 6, size=30))
    m = pd.DataFrame({"source_path": paths})
    for n in (1, 4, 7, 30, 100):
        shards = file_shards(m, n)
        assert 1 <= len(shards) <= min(n, 30)
        assert np.array_equal(np.concatenate(shards), np.arange(len(m)))  # all rows, in order
        owner = {p: k for k, s in enumerate(shards) for p in paths[s]}
        assert all(owner[p] == k for k, s in enumerate(shards) for p in paths[s])
    assert file_shards(m.iloc[:0], 3) == []


def test_embed_on_dask_writes_the_same_workspace(client, png_folder: Path, tmp_path: Path) -> None:
    from enrich.workspace import Workspace

    base = ["embed", str(png_folder), "--embedder", "pixels", "--latent-dim", "8", "-q"]
    assert main([*base, "-w", str(tmp_path / "local")]) == 0
    address = client.scheduler.address
    assert main([*base, "-w", str(tmp_path / "dask"), "--scheduler", address]) == 0
    a, b = Workspace(tmp_path / "local"), Workspace(tmp_path / "dask")
    ea, eb = a.embeddings(), b.embeddings()
    np.testing.assert_array_equal(ea.ids, eb.ids)
    # the same model on other batch shapes: equal up to float32 rounding of the projection
    np.testing.assert_allclose(ea.vectors, eb.vectors, rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(a.manifest(), b.manifest())
    pd.testing.assert_frame_equal(a.skipped(), b.skipped())
    skipped = b.skipped()["source_path"].tolist()
    assert sorted(Path(p).name for p in skipped) == ["broken.png", "truncated.png"]


@pytest.mark.slow
def test_a_worker_dying_mid_shard_loses_nothing(client, png_folder: Path, tmp_path: Path) -> None:
    from enrich.distributed.embed import embed_shards
    from enrich.embed.pixels import PixelsEmbedder

    rows, pp, options, ids, images, model = pixels_setup(png_folder, tmp_path / "model")
    assert Path(rows["source_path"].iloc[-1]).name.startswith("x")  # read after truncated.png
    marker = tmp_path / "died"
    got_ids, got, skips = embed_shards(
        rows,
        # dies at the last image, after the truncated file was read and skipped
        DieOnce(pp, str(marker), at=len(ids)),  # type: ignore[arg-type]
        options,
        tmp_path / "model",
        PixelsEmbedder,
        16,
        client=client,
        n_shards=1,  # one shard: the whole shard is lost and run again
    )
    assert marker.read_text() == "killed"  # a worker really died mid-shard
    assert got_ids == ids
    np.testing.assert_allclose(got, model.transform(images), rtol=1e-5, atol=1e-6)
    assert [Path(s.source_path).name for s in skips] == ["truncated.png"]  # listed once
    client.wait_for_workers(2, timeout=60)
