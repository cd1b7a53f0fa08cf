"""The chunked path: ``X`` as a Dask array of row chunks, on the CPU (SciPy) or the GPU (CuPy).

Each step maps over the chunks with the same small functions on both backends; with a
``distributed`` client active (``LocalCluster``, or dask-cuda's ``LocalCUDACluster`` with one
worker per GPU) the chunks are spread over its workers. Dask is imported only here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._backend import is_gpu_array

if TYPE_CHECKING:
    from collections.abc import Callable


def is_dask(x: object) -> bool:
    """Return whether ``x`` is a Dask array (without importing Dask)."""
    return type(x).__module__.startswith("dask")


def _blocks(X) -> list:
    """Return the chunks of ``X`` as Delayed objects, taken as they are.

    Without graph optimisation: optimised aliases of persisted chunks made the scheduler see one
    key with two different tasks ("Detected different run_spec") and lose chunks between steps.
    """
    return list(X.to_delayed(optimize_graph=False).ravel())


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
            return h5ad_rows(
                src.path, src.shape, src.bounds, gpu=True, nnz=src.nnz, check=src.check
            )
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

    ``chunked`` says that the chunks were asked for (``chunk_cells``, too many non-zeros for
    one matrix, or a distributed client); otherwise ``X`` was only left on disk so that
    :func:`scplaybook.get.to_gpu` can read it straight into GPU memory, in one piece when it fits.
    ``check``: every value is checked for counts as it is read.
    """

    path: str
    shape: tuple[int, int]
    nnz: int
    bounds: tuple[int, ...]
    chunked: bool
    check: bool = True


#: Dask arrays read from a file by :func:`h5ad_rows`, by Dask name. The read tasks are named by a
#: hash of (file, its size and modification time, chunks, device, check): reading the same file
#: again reuses its entry (the latest read's flags win), so the registry holds one small entry
#: per file read, and a file changed on disk gets new names.
_SOURCES: dict[str, H5Source] = {}


def source_of(X) -> H5Source | None:
    """Return the file behind a lazily read ``X`` (:func:`h5ad_rows`), or ``None``."""
    return _SOURCES.get(X.name) if is_dask(X) else None


def h5ad_rows(
    path: str, shape: tuple[int, int], bounds, *, gpu: bool = False, nnz: int = -1,
    chunked: bool = True, check: bool = True,
):  # fmt: skip
    """``X`` of a ``.h5ad`` (CSR) as a lazy Dask array of the row chunks ``bounds``.

    On the GPU each chunk is read through pinned buffers straight into GPU memory. With
    ``check``, each chunk's values are checked for counts as it is read.
    """
    import dask
    from dask.base import tokenize

    if gpu:
        meta = _gpu_meta(np.float32)
    else:
        import scipy.sparse as sp

        meta = sp.csr_matrix((0, 0), dtype=np.float32)
    # deterministic task names (see _SOURCES) that change when the file does
    stat = os.stat(path)
    version = (stat.st_size, stat.st_mtime_ns)
    blocks = [
        (
            dask.delayed(read_rows)(
                path, s, e, shape[1], gpu, check,
                dask_key_name=f"read-rows-{tokenize(path, version, s, e, gpu, check)}",
            ),
            e - s,
        )
        for s, e in zip(bounds[:-1], bounds[1:], strict=True)
    ]  # fmt: skip
    X = _blocks_to_dask(blocks, shape[1], np.float32, meta)
    _SOURCES[X.name] = H5Source(path, tuple(shape), nnz, tuple(bounds), chunked, check)
    return X


def read_rows(path: str, s: int, e: int, n_cols: int, gpu: bool, check: bool = True):
    """Rows ``s:e`` of ``X`` of a ``.h5ad`` (CSR) as float32/int32 CSR, on the GPU or the host.

    ``check`` refuses values that are not counts (:func:`scplaybook.io._read.not_counts`).
    """
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
            if check:
                _refuse_non_counts(data, cp, path, s, e)
            indices = h5_to_device(g["indices"], a, b).astype(cp.int32, copy=False)
            return csp.csr_matrix(
                (data, indices, cp.asarray(indptr.astype(np.int32))),
                shape=(e - s, n_cols),
                copy=False,
            )
        import scipy.sparse as sp

        data = g["data"][a:b].astype(np.float32, copy=False)
        if check:
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
    for b, s, e in zip(_blocks(X), offsets[:-1], offsets[1:], strict=True):
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

    parts = dask.compute(*[dask.delayed(_detected_block)(b) for b in _blocks(X)])
    return np.sum(parts, axis=0)


def gather(X):
    """One in-memory matrix from a chunked ``X``: CuPy or SciPy CSR, or dense CuPy/NumPy."""
    import dask

    blocks = dask.compute(*_blocks(X))
    if hasattr(blocks[0], "indptr"):
        if is_gpu_array(blocks[0]):
            import cupyx.scipy.sparse as csp

            return csp.vstack(blocks, format="csr")
        import scipy.sparse as sp

        return sp.vstack(blocks, format="csr")
    return _xp(blocks[0]).concatenate(blocks, axis=0)


def distributed_client():
    """Return the active ``distributed`` client (e.g. on a dask-cuda ``LocalCUDACluster``), or ``None``."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def start_dask(n_workers: int | None = 0, *, protocol: str = "tcp"):
    """Start a local Dask cluster and make it the default client; the chunked steps then use it.

    On the GPU backend a dask-cuda ``LocalCUDACluster`` with one worker per GPU (``n_workers``
    GPUs, ``None`` for all); on the CPU a ``LocalCluster`` of ``n_workers`` single-threaded
    processes. ``0`` starts nothing. Start it before :func:`scplaybook.read`: a ``.h5ad`` is then
    read in row chunks, which the workers read, filter, normalise, select genes on, regress out,
    scale and put through PCA; the later steps run on one GPU. The cluster stops with the process
    (or with ``client.close(); client.cluster.close()``).

    ``protocol="ucx"`` (dask-cuda with UCXX) moves GPU data between the processes over NVLink
    and CUDA IPC instead of through host memory and TCP.

    Returns
    -------
    The ``distributed.Client``, or ``None`` for ``n_workers=0``.
    """
    if n_workers == 0:
        return None
    if n_workers is not None and (not isinstance(n_workers, int) or n_workers < 0):
        from ._errors import ParameterError

        raise ParameterError(
            f"dask_workers={n_workers!r}: give a number of workers (0 for no Dask cluster)."
        )
    import atexit

    from distributed import Client

    from ._backend import resolve_backend
    from ._settings import logger

    if resolve_backend() == "gpu":
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(n_workers=n_workers, protocol=protocol)
        what = f"dask-cuda, one worker per GPU, {protocol}"
    else:
        from distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=n_workers or 2, threads_per_worker=1, dashboard_address=None
        )
        what = "CPU processes"
    client = Client(cluster)
    atexit.register(cluster.close)
    atexit.register(client.close)
    logger.info(f"Dask cluster: {len(cluster.workers)} workers ({what})")
    return client


# --- regress-out, scaling and PCA over row chunks (with a distributed client: on its workers) ---
# Each runs one pass that sums small per-chunk results (genes x covariates, per-gene moments, the
# genes x genes Gram matrix) where the chunks are, in a tree, so that only the total reaches this
# process; then, where X changes, one pass that maps every chunk.

#: How many partial sums one task of the tree adds up.
SUM_FAN_IN = 8


def _xp(block):
    if is_gpu_array(block):
        import cupy

        return cupy
    return np


def _host(a) -> np.ndarray:
    return a.get() if is_gpu_array(a) else np.asarray(a)


def _dense_copy(block):
    """Return a dense float32 copy of a chunk (never change chunks in place: Dask may reuse them)."""
    xp = _xp(block)
    if hasattr(block, "toarray"):
        return xp.asarray(block.toarray(), dtype=xp.float32)
    return xp.array(block, dtype=xp.float32)


def _rows(X):
    offsets = np.cumsum([0, *X.chunks[0]])
    return list(zip(_blocks(X), offsets[:-1], offsets[1:], strict=True))


def _add(*parts: tuple) -> tuple:
    return tuple(sum(p[i] for p in parts) for i in range(len(parts[0])))


def _to_host(arrays: tuple) -> tuple:
    return tuple(_host(a) for a in arrays)


def _sum_over_chunks(X, part, *row_arrays) -> list[np.ndarray]:
    """Sum ``part(chunk, *rows of row_arrays)`` (a tuple of arrays) over the chunks.

    The partial sums stay where they are computed (on the workers' GPUs) and are added up in a
    tree of :data:`SUM_FAN_IN`; only the total comes to this process, as host arrays.
    """
    import dask

    level = [dask.delayed(part)(b, *[a[s:e] for a in row_arrays]) for b, s, e in _rows(X)]
    while len(level) > 1:
        level = [
            dask.delayed(_add)(*level[i : i + SUM_FAN_IN]) for i in range(0, len(level), SUM_FAN_IN)
        ]
    (total,) = dask.compute(dask.delayed(_to_host)(level[0]))
    return list(total)


def _map_chunks(X, fn, *args, row_arrays=()):
    """``fn(chunk, *rows of row_arrays, *args)`` for every chunk, as a new (dense) chunked array.

    With a distributed client the new chunks are computed before this returns, so that the step
    that asked for them is the one timed for them.
    """
    import dask

    blocks = [
        (dask.delayed(fn)(b, *[a[s:e] for a in row_arrays], *args), e - s) for b, s, e in _rows(X)
    ]
    meta = _xp(X._meta).empty((0, 0), dtype=np.float32)
    out = _blocks_to_dask(blocks, X.shape[1], np.float32, meta).persist()
    if distributed_client() is not None:
        from distributed import wait

        wait(out)
    return out


def _dtx_chunk(block, design):
    xp = _xp(block)
    d = xp.asarray(design.astype(np.float32))
    return ((d.T @ _dense_copy(block)).astype(xp.float64),)


def _residual_chunk(block, design, beta):
    from .pp._normalize import subtract_fit

    xp = _xp(block)
    x = _dense_copy(block)
    subtract_fit(x, xp.asarray(design.astype(np.float32)), xp.asarray(beta), xp)
    return x


def regress_out(X, design: np.ndarray):
    """Residuals of every gene after the least-squares fit on ``design`` (cells x covariates)."""
    from .pp._normalize import fit_coefficients

    (dtx,) = _sum_over_chunks(X, _dtx_chunk, design)
    return _map_chunks(X, _residual_chunk, fit_coefficients(design, dtx), row_arrays=(design,))


def _moments_chunk(block):
    xp = _xp(block)
    x = _dense_copy(block)
    return x.sum(axis=0, dtype=xp.float64), (x * x).sum(axis=0, dtype=xp.float64)


def _scale_chunk(block, mean, std, max_value):
    xp = _xp(block)
    x = _dense_copy(block)
    x -= xp.asarray(mean)
    x /= xp.asarray(std)
    if max_value is not None:
        xp.clip(x, -max_value, max_value, out=x)
    return x


def scale(X, max_value: float | None):
    """Each gene to zero mean and unit variance (``n - 1``), clipped at ``max_value``, as scanpy.

    Returns the scaled chunks and the genes' means and standard deviations.
    """
    n = X.shape[0]
    total, squares = _sum_over_chunks(X, _moments_chunk)
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0) * n / (n - 1))
    std[std == 0] = 1
    out = _map_chunks(X, _scale_chunk, mean.astype(np.float32), std.astype(np.float32), max_value)
    return out, mean, std


def _gram_chunk(block):
    from .pp._pca import gram

    return gram(_dense_copy(block), _xp(block))


def _scores_chunk(block, mean, pcs):
    from .pp._pca import project

    xp = _xp(block)
    return _host(project(_dense_copy(block), xp.asarray(mean), xp.asarray(pcs)))


def pca(X, n_comps: int):
    """PCA of chunked ``X`` through its genes x genes covariance (see ``pp._pca.pca_from_gram``).

    Returns host arrays: scores, loadings, variances, variance ratios.
    """
    import dask

    from .pp._pca import components

    xtx, total = _sum_over_chunks(X, _gram_chunk)
    xp = _xp(X._meta)  # the eigendecomposition on this process's GPU when the chunks are on GPUs
    mean, pcs, var, ratio = components(xp.asarray(xtx), xp.asarray(total), X.shape[0], n_comps, xp)
    mean, pcs = _host(mean), _host(pcs)
    scores = dask.compute(*[dask.delayed(_scores_chunk)(b, mean, pcs) for b, _, _ in _rows(X)])
    return np.concatenate(scores, axis=0), pcs, _host(var), _host(ratio)
