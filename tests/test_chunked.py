"""The chunked (Dask) path on the CPU: the same results as the in-memory path, on a LocalCluster."""

import logging

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import scplaybook as scp
from scplaybook._chunks import is_dask, row_bounds

from ._biology import preprocess


def test_chunked_path_on_a_local_cluster_matches_in_memory(caplog):
    from distributed import Client, LocalCluster

    path = scp.datasets.demo_path()
    scp.set_backend("cpu")
    mem = preprocess(scp.read(path))
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster), caplog.at_level(logging.INFO, logger="scplaybook"):
            chunked = scp.read(path, chunk_cells=1000)
            assert is_dask(chunked.X) and chunked.X.numblocks[0] == 6
            preprocess(chunked)
    assert not is_dask(chunked.X)  # gathered once reduced to the highly variable genes
    assert "raw (all genes) is not kept" in caplog.text
    assert list(chunked.obs_names) == list(mem.obs_names)
    assert list(chunked.var_names) == list(mem.var_names)
    for col in ("total_counts", "n_genes_by_counts", "pct_counts_mt"):
        np.testing.assert_allclose(chunked.obs[col], mem.obs[col], rtol=1e-6)
    np.testing.assert_allclose(chunked.X, mem.X, atol=1e-4)
    q0, q1 = np.linalg.qr(mem.obsm["X_pca"])[0], np.linalg.qr(chunked.obsm["X_pca"])[0]
    assert np.linalg.svd(q0.T @ q1, compute_uv=False).min() > 0.999


def test_row_bounds_cut_by_non_zeros_or_rows():
    indptr = np.array([0, 5, 10, 10, 30, 31, 40])
    assert row_bounds(indptr, chunk_nnz=10) == [0, 3, 4, 6]  # a row over the size is alone
    assert row_bounds(indptr, chunk_rows=4) == [0, 4, 6]


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
