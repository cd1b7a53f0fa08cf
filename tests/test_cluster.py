"""The chunked path on a Dask cluster that already runs: a scheduler and workers started apart."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import scplaybook as scp

from ._biology import preprocess

pytestmark = pytest.mark.slow


def _start(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        )  # fmt: skip


@contextlib.contextmanager
def running_cluster(tmp_path: Path, worker: list[str], n: int = 2, env: dict | None = None):
    """``dask scheduler`` and ``n`` worker processes (``worker``: the command's words, e.g.
    ``["cuda", "worker"]``), each started apart as on a cluster; every process group killed after."""
    file = tmp_path / "scheduler.json"
    procs = [_start(["scheduler", "--scheduler-file", str(file), "--host", "127.0.0.1",
                     "--port", "0", "--no-dashboard"], tmp_path / "scheduler.log")]  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        for i in range(n):
            procs.append(_start([*worker, "--scheduler-file", str(file), "--host", "127.0.0.1",
                                 "--no-dashboard", "--name", f"w{i}"], tmp_path / f"worker{i}.log",
                                env))  # fmt: skip
        yield file, procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path):
    """``dask scheduler`` and two ``dask worker`` processes (no nanny: a killed one stays dead)."""
    with running_cluster(tmp_path, ["worker", "--nthreads", "1", "--no-nanny"]) as c:
        yield c


def test_chunked_path_on_a_running_cluster_survives_a_lost_worker(cluster, caplog):
    file, procs = cluster
    path = scp.datasets.demo_path()
    scp.set_backend("cpu")
    mem = preprocess(scp.read(path))
    with pytest.raises(scp.ParameterError, match="neither a scheduler address"):
        scp.start_dask(scheduler=str(file.with_name("missing.json")))
    client = scp.start_dask(scheduler=str(file))  # what the notebook's dask_scheduler calls
    try:
        client.wait_for_workers(2, timeout=120)
        chunked = scp.read(path, chunk_cells=1000)
        preprocess(chunked, n_comps=None)  # QC to HVG: the chunks live on the two workers
        held = {w for ws in client.who_has(chunked.X).values() for w in ws}
        assert len(held) == 2
        # one worker is lost between steps: its chunks are read and computed again on the other
        # (pinned to the lost worker, they waited for it for ever; the timer turns that into a
        # failure: closing the client ends the waiting computation)
        procs[2].kill()
        procs[2].wait(timeout=30)
        finish_on_one_worker(client, chunked)
    finally:
        client.close()
    np.testing.assert_allclose(chunked.var["std"], mem.var["std"], rtol=1e-4)
    assert_same_pcs(mem, chunked)


def finish_on_one_worker(client, adata) -> None:
    """Regress out, scale and PCA after a worker was lost: the one left must do it all."""
    guard = threading.Timer(300, client.close)
    guard.start()
    try:
        scp.pp.regress_out(adata)
        scp.pp.scale(adata)
        scp.pp.pca(adata, n_comps=20)
    finally:
        guard.cancel()
    assert len(client.scheduler_info()["workers"]) == 1


def assert_same_pcs(mem, chunked) -> None:
    """Same cells, and the same 20-PC subspace as the in-memory path."""
    assert list(chunked.obs_names) == list(mem.obs_names)
    q0 = np.linalg.qr(mem.obsm["X_pca"][:, :20])[0]
    q1 = np.linalg.qr(chunked.obsm["X_pca"])[0]
    assert np.linalg.svd(q0.T @ q1, compute_uv=False).min() > 0.999


def test_a_worker_that_cannot_see_the_input_is_named(cluster, tmp_path, monkeypatch):
    """Workers read their own rows: a path one cannot open names that worker and the fix."""
    from scplaybook._chunks import read_rows

    file, _ = cluster
    scp.set_backend("cpu")
    client = scp.start_dask(scheduler=str(file))
    try:
        missing = str(tmp_path / "not_on_the_workers.h5ad")  # what a worker without the share sees
        task = client.submit(read_rows, missing, 0, 10, 50, False, pure=False)
        with pytest.raises(
            scp.InputError, match=r"Dask worker tcp://127.0.0.1:\d+ cannot read .*same path"
        ):
            task.result(timeout=120)
    finally:
        client.close()
    with pytest.raises(FileNotFoundError):  # outside a worker, the plain error (read() names it)
        read_rows(missing, 0, 10, 50, False)
    # the GPU backend on CPU workers: each worker named with why it cannot use a GPU
    from scplaybook import _session

    monkeypatch.setattr(_session, "resolve_backend", lambda *a: "gpu")
    with pytest.raises(
        scp.ParameterError, match=r"needs GPU workers .*tcp://127.0.0.1:\d+ cannot use one \("
    ):
        scp.start_dask(scheduler=str(file))
