"""The chunked path: ``X`` as a Dask array of row chunks, on the CPU (SciPy) or the GPU (CuPy).

Each step maps over the chunks with the same small functions on both backends; with a
``distributed`` client active (``LocalCluster``, or dask-cuda's ``LocalCUDACluster`` with one
worker per GPU) the chunks are spread over its workers. Dask is imported only here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._backend import is_gpu_array

if TYPE_CHECKING:
    from collections.abc import Callable


def is_dask(x: object) -> bool:
    """Return whether ``x`` is a Dask array (without importing Dask)."""
    return type(x).__module__.startswith("dask")


def _meta(block):
    return block[:0]


def _blocks_to_dask(blocks: list, n_cols: int, dtype, meta):
    import dask.array as da

    parts = [
        da.from_delayed(b, shape=(int(n), n_cols), dtype=dtype, meta=meta) for b, n in blocks if n
    ]
    return da.concatenate(parts, axis=0)


def rows_to_dask(X, chunk_nnz: int, *, to_block: Callable | None = None):
    """Cut ``X`` into row chunks of about ``chunk_nnz`` non-zeros, as a Dask array.

    ``X`` is a SciPy CSR matrix or a Dask array of them; ``to_block`` makes each chunk (for
    example the copy to the GPU).
    """
    import dask

    if is_dask(X):
        return X.map_blocks(to_block, meta=_gpu_meta(X.dtype)) if to_block else X
    indptr = np.asarray(X.indptr)
    bounds = [0]
    while bounds[-1] < X.shape[0]:
        start = bounds[-1]
        stop = int(np.searchsorted(indptr, indptr[start] + chunk_nnz, side="right")) - 1
        bounds.append(min(X.shape[0], max(stop, start + 1)))
    make = to_block or (lambda b: b)
    meta = _gpu_meta(X.dtype) if to_block else X[:0]
    blocks = [
        (dask.delayed(make)(X[s:e]), e - s) for s, e in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return _blocks_to_dask(blocks, X.shape[1], X.dtype, meta)


def _gpu_meta(dtype):
    import cupyx.scipy.sparse as csp

    return csp.csr_matrix((0, 0), dtype=dtype)


def _take_rows_block(block, rows):
    if is_gpu_array(block):
        from ._gpu import take_rows

        return take_rows(block, rows)
    return block[rows]


def _take_cols_block(block, cols):
    if is_gpu_array(block):
        from ._gpu import take_cols

        return take_cols(block, cols)
    return block[:, cols]


def take_rows(X, keep: np.ndarray):
    """Rows of a chunked ``X`` where the boolean ``keep`` is true (chunk by chunk)."""
    import dask

    offsets = np.cumsum([0, *X.chunks[0]])
    blocks = []
    for b, s, e in zip(X.to_delayed().ravel(), offsets[:-1], offsets[1:], strict=True):
        rows = np.flatnonzero(keep[s:e])
        blocks.append((dask.delayed(_take_rows_block)(b, rows), rows.size))
    return _blocks_to_dask(blocks, X.shape[1], X.dtype, X._meta)


def take_cols(X, cols: np.ndarray):
    """Columns ``cols`` (sorted positions) of a chunked ``X``."""
    return X.map_blocks(
        _take_cols_block, cols, chunks=(X.chunks[0], (len(cols),)), meta=X._meta, dtype=X.dtype
    )


def _detected_block(block) -> np.ndarray:
    if getattr(block, "format", None) != "csr":
        n = (block > 0).sum(axis=0)
        return np.asarray(n.get() if is_gpu_array(n) else n).ravel()
    if is_gpu_array(block):
        import cupy as cp

        return cp.bincount(block.indices[block.data > 0], minlength=block.shape[1]).get()
    return np.bincount(block.indices[block.data > 0], minlength=block.shape[1])


def cells_per_gene(X) -> np.ndarray:
    """Count the cells in which each gene is detected (chunk by chunk when ``X`` is chunked)."""
    if not is_dask(X):
        return _detected_block(X)
    import dask

    parts = dask.compute(*[dask.delayed(_detected_block)(b) for b in X.to_delayed().ravel()])
    return np.sum(parts, axis=0)


def gather(X):
    """One in-memory matrix (CuPy or SciPy CSR) from a chunked ``X``."""
    import dask

    blocks = dask.compute(*X.to_delayed().ravel())
    if is_gpu_array(blocks[0]):
        import cupyx.scipy.sparse as csp

        return csp.vstack(blocks, format="csr")
    import scipy.sparse as sp

    return sp.vstack(blocks, format="csr")
