"""The chunked path: ``X`` as a Dask array of row chunks, on the CPU (SciPy) or the GPU (CuPy).

Each step maps over the chunks with the same small functions on both backends; with a
``distributed`` client active (``LocalCluster``, or dask-cuda's ``LocalCUDACluster`` with one
worker per GPU) the chunks are spread over its workers. Dask is imported only here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._backend import is_gpu_array

if TYPE_CHECKING:
    from collections.abc import Callable


def is_dask(x: object) -> bool:
    """Return whether ``x`` is a Dask array (without importing Dask)."""
    return type(x).__module__.startswith("dask")


def _blocks_to_dask(blocks: list, n_cols: int, dtype, meta):
    import dask.array as da

    parts = [
        da.from_delayed(b, shape=(int(n), n_cols), dtype=dtype, meta=meta) for b, n in blocks if n
    ]
    return da.concatenate(parts, axis=0)


def row_bounds(indptr: np.ndarray, chunk_nnz: int | None = None, chunk_rows: int | None = None):
    """Row boundaries of chunks of ``chunk_rows`` rows, or of about ``chunk_nnz`` non-zeros."""
    n = len(indptr) - 1
    if chunk_rows:
        return [*range(0, n, chunk_rows), n]
    bounds = [0]
    while bounds[-1] < n:
        start = bounds[-1]
        stop = int(np.searchsorted(indptr, indptr[start] + chunk_nnz, side="right")) - 1
        bounds.append(min(n, max(stop, start + 1)))
    return bounds


def _row_block(X, s: int, e: int):
    """Rows ``s:e`` of a SciPy CSR matrix as a view of its arrays (no copy)."""
    import scipy.sparse as sp

    a, b = int(X.indptr[s]), int(X.indptr[e])
    return sp.csr_matrix(
        (X.data[a:b], X.indices[a:b], X.indptr[s : e + 1] - a),
        shape=(e - s, X.shape[1]),
        copy=False,
    )


def rows_to_dask(X, chunk_nnz: int, *, to_block: Callable | None = None):
    """Cut ``X`` into row chunks of about ``chunk_nnz`` non-zeros, as a Dask array.

    ``X`` is a SciPy CSR matrix or a Dask array of them; ``to_block`` makes each chunk (for
    example the copy to the GPU). Chunks read from a ``.h5ad`` (:func:`h5ad_rows`) go from the
    file to the GPU directly when ``to_block`` is the copy to the GPU.
    """
    import dask

    if is_dask(X):
        src = source_of(X)
        if src is not None and to_block is not None:
            return h5ad_rows(src.path, src.shape, src.bounds, gpu=True)
        return X.map_blocks(to_block, meta=_gpu_meta(X.dtype)) if to_block else X
    bounds = row_bounds(np.asarray(X.indptr), chunk_nnz)
    make = to_block or (lambda b: b)
    meta = _gpu_meta(X.dtype) if to_block else X[:0]
    blocks = [
        (dask.delayed(make)(_row_block(X, s, e)), e - s)
        for s, e in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return _blocks_to_dask(blocks, X.shape[1], X.dtype, meta)


@dataclass(frozen=True)
class H5Source:
    """Where a lazily read ``X`` lives: the ``.h5ad`` file, its shape and non-zeros, the chunks.

    ``chunked`` says that the chunks were asked for (``chunk_cells``, or too many non-zeros for
    one matrix); otherwise ``X`` was only left on disk so that :func:`scplaybook.get.to_gpu` can
    read it straight into GPU memory, in one piece when it fits.
    """

    path: str
    shape: tuple[int, int]
    nnz: int
    bounds: tuple[int, ...]
    chunked: bool


#: Dask arrays read from a file by :func:`h5ad_rows`, by Dask name (names are content hashes,
#: so the same file and chunks give the same name; the entries are a few numbers each).
_SOURCES: dict[str, H5Source] = {}


def source_of(X) -> H5Source | None:
    """Return the file behind a lazily read ``X`` (:func:`h5ad_rows`), or ``None``."""
    return _SOURCES.get(X.name) if is_dask(X) else None


def h5ad_rows(
    path: str, shape: tuple[int, int], bounds, *, gpu: bool = False, nnz: int = -1,
    chunked: bool = True,
):  # fmt: skip
    """``X`` of a ``.h5ad`` (CSR) as a lazy Dask array of the row chunks ``bounds``.

    On the GPU each chunk is read through pinned buffers straight into GPU memory.
    """
    import dask

    if gpu:
        meta = _gpu_meta(np.float32)
    else:
        import scipy.sparse as sp

        meta = sp.csr_matrix((0, 0), dtype=np.float32)
    blocks = [
        (dask.delayed(read_rows)(path, s, e, shape[1], gpu), e - s)
        for s, e in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    X = _blocks_to_dask(blocks, shape[1], np.float32, meta)
    old = _SOURCES.get(X.name)
    _SOURCES[X.name] = H5Source(
        path, tuple(shape), nnz if nnz >= 0 else getattr(old, "nnz", -1), tuple(bounds),
        chunked if old is None else old.chunked,
    )  # fmt: skip
    return X


def read_rows(path: str, s: int, e: int, n_cols: int, gpu: bool):
    """Rows ``s:e`` of ``X`` of a ``.h5ad`` (CSR) as float32/int32 CSR, on the GPU or the host."""
    import h5py

    with h5py.File(path, "r") as f:
        g = f["X"]
        indptr = g["indptr"][s : e + 1].astype(np.int64)
        a, b = int(indptr[0]), int(indptr[-1])
        indptr -= a
        if gpu:
            import cupy as cp
            import cupyx.scipy.sparse as csp

            from ._gpu import h5_to_device

            data = h5_to_device(g["data"], a, b).astype(cp.float32, copy=False)
            _refuse_non_counts(data, cp, path, s, e)
            indices = h5_to_device(g["indices"], a, b).astype(cp.int32, copy=False)
            return csp.csr_matrix(
                (data, indices, cp.asarray(indptr.astype(np.int32))),
                shape=(e - s, n_cols),
                copy=False,
            )
        import scipy.sparse as sp

        data = g["data"][a:b].astype(np.float32, copy=False)
        _refuse_non_counts(data, np, path, s, e)
        return sp.csr_matrix((data, g["indices"][a:b], indptr), shape=(e - s, n_cols), copy=False)


def _refuse_non_counts(data, xp, path: str, s: int, e: int) -> None:
    from ._errors import InputError
    from .io._read import not_counts

    problem = not_counts(data, xp)
    if problem:
        raise InputError(f"{path} (cells {s}-{e - 1}): {problem}")


def _gpu_meta(dtype):
    import cupyx.scipy.sparse as csp

    return csp.csr_matrix((0, 0), dtype=dtype)


def _take_block(block, idx, axis: int):
    if is_gpu_array(block):
        from . import _gpu

        return (_gpu.take_rows if axis == 0 else _gpu.take_cols)(block, idx)
    return block[idx] if axis == 0 else block[:, idx]


def take_rows(X, keep: np.ndarray):
    """Rows of a chunked ``X`` where the boolean ``keep`` is true (chunk by chunk)."""
    import dask

    offsets = np.cumsum([0, *X.chunks[0]])
    blocks = []
    for b, s, e in zip(X.to_delayed().ravel(), offsets[:-1], offsets[1:], strict=True):
        rows = np.flatnonzero(keep[s:e])
        blocks.append((dask.delayed(_take_block)(b, rows, 0), rows.size))
    return _blocks_to_dask(blocks, X.shape[1], X.dtype, X._meta)


def take_cols(X, cols: np.ndarray):
    """Columns ``cols`` (sorted positions) of a chunked ``X``."""
    return X.map_blocks(
        _take_block, cols, 1, chunks=(X.chunks[0], (len(cols),)), meta=X._meta, dtype=X.dtype
    )


def _detected_block(block) -> np.ndarray:
    if getattr(block, "format", None) != "csr":
        n = (block > 0).sum(axis=0)
        return np.asarray(n.get() if is_gpu_array(n) else n).ravel()
    if is_gpu_array(block):
        from ._gpu import cells_per_gene as on_gpu

        return on_gpu(block)
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
