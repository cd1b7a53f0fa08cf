"""The chunked (Dask) path on the CPU: the same results as the in-memory path, on a LocalCluster."""

import logging
import os
from collections import Counter

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from distributed import get_task_stream

import scplaybook as scp
from scplaybook._chunks import even_bounds, is_dask, row_bounds

from ._biology import preprocess


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _count_gathers(dask_scheduler) -> None:
    """Count the results the scheduler passes on to a client (``Scheduler.gather``)."""
    gather = dask_scheduler.handlers["gather"]
    dask_scheduler.scp_gathers = 0

    async def counted(*args, **kwargs):
        dask_scheduler.scp_gathers += 1
        return await gather(*args, **kwargs)

    dask_scheduler.handlers["gather"] = counted


def _task_names(tasks: list[dict]) -> list[str]:
    """What each task of a task stream ran: its key's name part (``'residual_chunk'``, ``'from'``...)."""
    return [str(t["key"]).split("-")[0].strip("('\"") for t in tasks]


def test_chunked_path_on_a_local_cluster_matches_in_memory(caplog):
    path = scp.datasets.demo_path()
    scp.set_backend("cpu")
    mem = preprocess(scp.read(path))
    scheduler_log = _Collect()  # distributed's loggers do not propagate to caplog's handler
    logging.getLogger("distributed.scheduler").addHandler(scheduler_log)
    with caplog.at_level(logging.INFO, logger="scplaybook"):
        client = scp.start_dask(2)  # what the notebook's dask_workers parameter calls
        try:
            assert len(client.cluster.workers) == 2
            chunked = scp.read(path, chunk_cells=1000)
            assert is_dask(chunked.X) and chunked.X.numblocks[0] == 6
            preprocess(chunked, n_comps=None)
            # QC read the chunks onto the workers, three each, in runs of cells, and there they stay
            held = client.who_has(chunked.X)
            assert sorted(Counter(w for (w,) in held.values()).values()) == [3, 3]
            with get_task_stream(client) as steps:
                scp.pp.regress_out(chunked)
                scp.pp.scale(chunked)
            client.run_on_scheduler(_count_gathers)
            with get_task_stream(client) as stream:
                scp.pp.pca(chunked, n_comps=20)
            # every task computes: no alias tasks between a chunk and its readers (from_delayed
            # and concatenate put two per chunk into every step)
            names = Counter(_task_names(steps.data + stream.data))
            assert not {"from", "concatenate"} & set(names), names
            assert names["residual_chunk"] == names["scale_chunk"] == 6, names
            # PCA's covariance is summed on each worker first: one partial sum moves, not one per chunk
            moves = [s for t in stream.data for s in t["startstops"] if s["action"] == "transfer"]
            assert len(moves) == 1, moves
            assert is_dask(chunked.X)  # X stays on the workers after PCA...
            scp.tl.rank_genes_groups(chunked, "cell_type", method="wilcoxon", use_raw=False)
            assert not is_dask(chunked.X)  # ...until differential expression gathers it
            # the scores and X came straight from the workers, not through the scheduler
            assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.scp_gathers) == 0
        finally:
            client.close()
            client.cluster.close()
            logging.getLogger("distributed.scheduler").removeHandler(scheduler_log)
    assert scp.start_dask(0) is None
    with pytest.raises(scp.ParameterError, match="give a number of workers"):
        scp.start_dask(-2)
    # with a distributed client, regress-out, scaling and PCA ran on the workers' row chunks
    assert "X stays in row chunks across the Dask workers through PCA" in caplog.text
    assert "comes from the Dask workers into this process" in caplog.text
    # X is read once onto the workers; no chunk key is submitted twice with different tasks (the
    # scheduler warns of deadlocks then; before the fix, filter_genes lost its chunks here)
    assert not [m for m in scheduler_log.messages if "Detected different `run_spec`" in m]
    assert chunked.uns["pca"]["params"]["method"] == "covariance (row chunks)"
    scp.tl.rank_genes_groups(mem, "cell_type", method="wilcoxon", use_raw=False)
    key = "rank_genes_groups_wilcoxon"
    for group in mem.obs["cell_type"].cat.categories:
        top = {str(g) for g in mem.uns[key]["names"][group][:10]}
        assert top == {str(g) for g in chunked.uns[key]["names"][group][:10]}
    assert "raw (all genes) is not kept" in caplog.text
    np.testing.assert_allclose(chunked.var["std"], mem.var["std"], rtol=1e-4)
    assert list(chunked.obs_names) == list(mem.obs_names)
    assert list(chunked.var_names) == list(mem.var_names)
    # scanpy's QC metrics, the same columns and dtypes, from one pass over the chunks
    for df, ref in ((chunked.obs, mem.obs), (chunked.var, mem.var)):
        assert list(df.columns) == list(ref.columns)
        for col in [c for c in ref.columns if "counts" in c]:
            assert df[col].dtype == ref[col].dtype, col
            np.testing.assert_allclose(df[col], ref[col], rtol=1e-6, err_msg=col)
    np.testing.assert_allclose(chunked.X, mem.X, atol=1e-4)
    q0, q1 = np.linalg.qr(mem.obsm["X_pca"])[0], np.linalg.qr(chunked.obsm["X_pca"])[0]
    assert np.linalg.svd(q0.T @ q1, compute_uv=False).min() > 0.999


def test_row_bounds_cut_by_non_zeros_or_rows():
    indptr = np.array([0, 5, 10, 10, 30, 31, 40])
    assert row_bounds(indptr, chunk_nnz=10) == [0, 3, 4, 6]  # a row over the size is alone
    assert row_bounds(indptr, chunk_rows=4) == [0, 4, 6]
    assert even_bounds(indptr, 2) == [0, 4, 6]  # 20 non-zeros each side of row 4
    assert even_bounds(indptr, 1) == [0, 6]
    assert even_bounds(np.arange(0, 1001, 10), 4) == [0, 25, 50, 75, 100]


def test_reading_a_csc_file_in_chunks_is_refused(tmp_path):
    path = tmp_path / "csc.h5ad"
    ad.AnnData(sp.random(50, 20, density=0.3, format="csc", dtype=np.float32)).write_h5ad(path)
    with pytest.raises(scp.InputError, match="needs X stored as CSR"):
        scp.read(path, chunk_cells=10, gene_symbols=None, check_counts=False)


def test_streamed_synthetic_file_equals_the_in_memory_generator(tmp_path):
    a = scp.datasets.synthetic_pbmc(400, 1500, chunk_size=150, progress=False)
    nnz = scp.datasets.write_synthetic_h5ad(
        tmp_path / "s.h5ad", 400, 1500, chunk_size=150, progress=False
    )
    b = ad.read_h5ad(tmp_path / "s.h5ad")
    assert nnz == a.X.nnz and (a.X != b.X).nnz == 0 and b.X.indices.dtype == np.int32
    assert (a.obs["cell_type"] == b.obs["cell_type"]).all()


def test_file_extents_read_with_pread_equal_hdf5(tmp_path):
    """The byte ranges behind the parallel file -> GPU reads give exactly what HDF5 gives."""
    import os

    import h5py

    from scplaybook._gpu import file_extents, pread_into

    path = tmp_path / "m.h5ad"
    X = sp.random(3000, 400, density=0.1, format="csr", dtype=np.float32, random_state=0)
    ad.AnnData(X).write_h5ad(path)  # anndata writes resizable, chunked datasets
    with h5py.File(path, "a") as f:
        f.create_dataset("plain", data=np.arange(5000, dtype=np.int64))  # contiguous
        f.create_dataset("packed", data=np.arange(5000, dtype=np.float32), compression="gzip")
    rng = np.random.default_rng(0)
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path, "r") as f:
            assert file_extents(f["packed"], 0, 10) is None  # HDF5 must decode it
            for name in ("X/data", "X/indices", "plain"):
                d = f[name]
                for start, stop in [
                    (0, d.shape[0]),
                    *np.sort(rng.integers(0, d.shape[0], (20, 2))),
                ]:
                    out = np.empty(stop - start, d.dtype)
                    view = out.view(np.uint8)
                    for src, at, n in file_extents(d, int(start), int(stop)):
                        pread_into(fd, memoryview(view[at : at + n]), src)
                    np.testing.assert_array_equal(out, d[start:stop])
    finally:
        os.close(fd)


def test_lazy_read_checks_every_chunk_as_it_is_read(tmp_path, monkeypatch):
    """A value that is not a count past the first cells read() checks is found in its chunk."""
    from scplaybook.io import _read

    X = sp.random(600, 50, density=0.3, format="csr", dtype=np.float32, random_state=1)
    X.data = np.ceil(X.data * 10)
    X[500, X[500].indices[0]] = 2.5
    path = tmp_path / "late.h5ad"
    ad.AnnData(X).write_h5ad(path)
    scp.set_backend("cpu")
    with pytest.raises(scp.InputError, match="non-integer"):  # within the first 2M values
        scp.read(path, chunk_cells=100, gene_symbols=None)
    first_rows = _read._first_rows
    monkeypatch.setattr(_read, "_first_rows", lambda p, shape: first_rows(p, shape, nnz=100))
    lazy = scp.read(path, chunk_cells=100, gene_symbols=None)  # its first cells are counts
    with pytest.raises(scp.InputError, match=r"cells 500-599\): the matrix has non-integer"):
        lazy.X.compute()
    unchecked = scp.read(path, chunk_cells=100, gene_symbols=None, check_counts=False)
    assert 2.5 in unchecked.X.compute()[500].data  # check_counts=False reads it as it is


def test_gpu_session_leaves_x_on_disk_for_to_gpu(tmp_path, monkeypatch):
    """On the GPU backend a CSR .h5ad is read lazily in one piece (to_gpu reads it to the GPU)."""
    from scplaybook import _chunks
    from scplaybook._chunks import source_of
    from scplaybook.io import _read

    path = tmp_path / "m.h5ad"
    X = sp.random(300, 40, density=0.2, format="csr", dtype=np.float32, random_state=2)
    X.data = np.ceil(X.data * 5)
    ad.AnnData(X).write_h5ad(path)
    monkeypatch.setattr(_read, "resolve_backend", lambda: "gpu")
    lazy = _read.read(path, gene_symbols=None)
    src = source_of(lazy.X)
    assert src is not None and not src.chunked and src.nnz == X.nnz and src.shape == X.shape
    assert (lazy.X.compute() != X).nnz == 0
    forced = _read.read(path, gene_symbols=None, chunk_cells=100)
    assert source_of(forced.X).chunked and forced.X.numblocks[0] == 3
    n_sources = len(_chunks._SOURCES)  # the registry of lazily read files does not grow per read
    again = _read.read(path, gene_symbols=None, chunk_cells=100)
    assert again.X.name == forced.X.name and len(_chunks._SOURCES) == n_sources
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file changed on disk
    assert _read.read(path, gene_symbols=None, chunk_cells=100).X.name != forced.X.name
    monkeypatch.setattr(_read, "resolve_backend", lambda: "cpu")
    assert sp.issparse(_read.read(path, gene_symbols=None).X)  # the CPU reads it at once


def test_gene_subset_of_chunked_data_equals_anndatas_and_keeps_obs():
    """Subsetting genes of chunked data cuts var and what aligns with genes as AnnData does,
    without re-creating obs (AnnData's own way copies it: 0.3 s at 1.3M cells)."""
    import pandas as pd

    from scplaybook._chunks import rows_to_dask
    from scplaybook._subset import subset_var

    rng = np.random.default_rng(0)
    X = sp.random(300, 40, density=0.3, format="csr", dtype=np.float32, random_state=3)
    a = ad.AnnData(
        X=X,
        obs=pd.DataFrame({"t": pd.Categorical(rng.choice(["x", "y"], 300))}, index=[f"c{i}" for i in range(300)]),
        var=pd.DataFrame(
            {"kind": pd.Categorical(["a"] * 5 + ["b"] * 35), "n": np.arange(40.0)},
            index=[f"g{i}" for i in range(40)],
        ),
        varm={"PCs": rng.random((40, 3))},
        varp={"corr": rng.random((40, 40))},
        layers={"counts": X.copy()},
    )  # fmt: skip
    keep = np.arange(40) >= 5  # drops every gene of category "a"
    expected = a[:, keep].copy()
    a.X = rows_to_dask(X, 3000)
    obs = a.obs
    subset_var(a, keep)
    assert a.obs is obs and a.shape == (300, 35) and a.X.shape == (300, 35)
    pd.testing.assert_frame_equal(a.var, expected.var)
    assert list(a.var["kind"].cat.categories) == ["b"]
    np.testing.assert_array_equal(a.varm["PCs"], expected.varm["PCs"])
    np.testing.assert_array_equal(a.varp["corr"], expected.varp["corr"])
    assert (a.layers["counts"] != expected.layers["counts"]).nnz == 0
    assert (a.X.compute() != expected.X).nnz == 0


def test_cell_subset_of_chunked_data_equals_anndatas():
    """Subsetting cells of chunked data cuts obs, obsm, obsp and layers, and the colours of
    categories no longer there, as AnnData's own subset does (without its view and uniqueness
    check: 0.5 s at 1.3M cells on this machine)."""
    import pandas as pd

    from scplaybook._chunks import rows_to_dask
    from scplaybook._subset import subset_obs

    rng = np.random.default_rng(0)
    X = sp.random(300, 40, density=0.3, format="csr", dtype=np.float32, random_state=3)
    t = pd.Categorical(np.where(np.arange(300) < 20, "gone", rng.choice(["x", "y"], 300)))
    a = ad.AnnData(
        X=X,
        obs=pd.DataFrame({"t": t, "v": rng.random(300)}, index=[f"c{i}" for i in range(300)]),
        obsm={"X_pca": rng.random((300, 3)), "meta": pd.DataFrame({"m": np.arange(300)}, index=[f"c{i}" for i in range(300)])},
        obsp={"connectivities": sp.random(300, 300, density=0.05, format="csr", random_state=1)},
        uns={"t_colors": np.array(["#111111", "#222222", "#333333"]), "other": 1},
    )  # fmt: skip
    keep = np.arange(300) >= 20  # every cell of category "gone" goes
    keep[rng.choice(np.arange(20, 300), 30, replace=False)] = False
    expected = a.copy()
    expected._inplace_subset_obs(np.flatnonzero(keep))
    a.layers["counts"] = rows_to_dask(X, 3000)
    a.X = rows_to_dask(X, 3000)
    subset_obs(a, keep)
    assert a.shape == (250, 40) and a.X.shape == (250, 40) and a.layers["counts"].shape == (250, 40)
    pd.testing.assert_frame_equal(a.obs, expected.obs)
    assert list(a.obs["t"].cat.categories) == ["x", "y"]
    np.testing.assert_array_equal(a.uns["t_colors"], expected.uns["t_colors"])
    assert len(a.uns["t_colors"]) == 2
    np.testing.assert_array_equal(a.obsm["X_pca"], expected.obsm["X_pca"])
    pd.testing.assert_frame_equal(a.obsm["meta"], expected.obsm["meta"])
    assert (a.obsp["connectivities"] != expected.obsp["connectivities"]).nnz == 0
    assert (a.X.compute() != expected.X).nnz == 0
    assert (a.layers["counts"].compute() != expected.X).nnz == 0


def test_rows_come_back_in_order_whatever_chunk_finishes_first():
    """``compute_rows`` puts each chunk's rows in place as it arrives; the first chunk here last."""
    import time

    import dask
    from distributed import Client, LocalCluster

    from scplaybook._chunks import compute_rows

    def block(i, n):
        if i == 0:
            time.sleep(0.5)
        return np.full((n, 3), i, dtype=np.float32)

    sizes = [4, 1, 3, 2]
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False) as cluster:
        with Client(cluster):
            parts = [dask.delayed(block)(i, n) for i, n in enumerate(sizes)]
            rows, total = compute_rows(parts, sizes, dask.delayed(sum)(sizes))
    assert total == 10 and rows.dtype == np.float32 and rows.shape == (10, 3)
    np.testing.assert_array_equal(rows[:, 0], np.repeat(np.arange(4), sizes))
    rows, total = compute_rows(parts, sizes, dask.delayed(sum)(sizes))  # no client: the same
    np.testing.assert_array_equal(rows[:, 0], np.repeat(np.arange(4), sizes))


def test_pca_decomposed_on_a_worker_with_its_scores_in_the_same_submission(monkeypatch):
    """The GPU route of chunked PCA (covariance decomposed where it is summed, the scores computed
    from it in the same submission), run on CPU workers: the same PCA as decomposed here."""
    from scplaybook.pp import _pca

    path = scp.datasets.demo_path()
    scp.set_backend("cpu")
    client = scp.start_dask(2)
    try:
        adata = preprocess(scp.read(path, chunk_cells=1000), n_comps=None)
        scp.pp.scale(adata)
        here = scp.pp.pca(adata.copy(), n_comps=20).obsm["X_pca"]
        monkeypatch.setattr(_pca, "on_gpu", lambda X: True)
        with get_task_stream(client) as stream:
            fused = scp.pp.pca(adata, n_comps=20)
    finally:
        client.close()
        client.cluster.close()
    np.testing.assert_allclose(fused.obsm["X_pca"], here, rtol=1e-4, atol=1e-4)
    assert fused.obsm["X_pca"].dtype == np.float32 and fused.obsm["X_pca"].shape == here.shape
    # one submission: the eigendecomposition's task, then the score tasks
    names = _task_names(stream.data)
    assert names.count("_sum_then") == 1 and names.count("_scores_of") == 6, names


def test_chunks_read_onto_the_workers_are_not_read_again():
    """QC reads the file's chunks onto the workers once; later steps use those, not the file."""
    from scplaybook._chunks import source_of

    scp.set_backend("cpu")
    client = scp.start_dask(2)
    try:
        adata = scp.read(scp.datasets.demo_path(), chunk_cells=1000)
        assert source_of(adata.X) is not None  # lazy: still on disk
        scp.pp.calculate_qc_metrics(adata)
        assert source_of(adata.X) is None  # on the workers now
        with get_task_stream(client) as stream:
            scp.pp.calculate_qc_metrics(adata)
    finally:
        client.close()
        client.cluster.close()
    assert not [t for t in stream.data if "read-rows" in str(t["key"])]
