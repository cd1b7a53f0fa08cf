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


def _blocks_to_dask(blocks: list, n_cols: int, dtype, meta, *, spread: bool = False):
    """One Dask array from ``(Delayed chunk, n_rows)`` pairs (empty chunks left out).

    ``spread``: with a distributed client, compute the chunks now, in contiguous runs, one run per
    worker (:func:`chunk_workers`), and wait for them; the later per-chunk tasks follow their
    chunks, so each worker keeps working on its own run of cells.
    """
    import dask.array as da

    blocks = [(b, int(n)) for b, n in blocks if n]
    client = distributed_client() if spread else None
    if client is not None:
        owners = chunk_workers(len(blocks))
        placed = [b for b, _ in blocks]
        for worker in dict.fromkeys(owners):
            runs = [i for i, o in enumerate(owners) if o == worker]
            done = client.persist([placed[i] for i in runs], workers=[worker])
            for i, d in zip(runs, done, strict=True):
                placed[i] = d
        blocks = [(d, n) for d, (_, n) in zip(placed, blocks, strict=True)]
    parts = [da.from_delayed(b, shape=(n, n_cols), dtype=dtype, meta=meta) for b, n in blocks]
    X = da.concatenate(parts, axis=0)
    if client is not None:
        _wait_on_workers(X)
    return X


def _wait_on_workers(X) -> None:
    """Wait until the persisted chunks of ``X`` are computed (with a distributed client)."""
    from distributed import futures_of, wait

    wait(futures_of(X))


def chunk_workers(n_chunks: int) -> list[str | None]:
    """Return the worker each of ``n_chunks`` row chunks belongs to: even, contiguous runs.

    Chunks read with ``spread`` are placed so, and the partial sums over chunks are first added
    up run by run (on that worker), so that only one partial result per worker moves. ``None``
    for every chunk without a distributed client.
    """
    client = distributed_client()
    if client is None:
        return [None] * n_chunks
    workers = sorted(client.nthreads())
    return [workers[i * len(workers) // n_chunks] for i in range(n_chunks)]


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


def even_bounds(indptr: np.ndarray, n_chunks: int) -> list[int]:
    """Row boundaries of ``n_chunks`` chunks of about equal non-zeros (fewer for very few rows)."""
    n = len(indptr) - 1
    targets = np.arange(1, n_chunks) * (int(indptr[-1]) / n_chunks)
    inner = np.searchsorted(np.asarray(indptr), targets, side="left")
    return sorted({0, n, *(int(i) for i in inner if 0 < i < n)})


def _row_block(X, s: int, e: int):
    """Rows ``s:e`` of a SciPy CSR matrix as a view of its arrays (no copy)."""
    import scipy.sparse as sp

    a, b = int(X.indptr[s]), int(X.indptr[e])
    return sp.csr_matrix(
        (X.data[a:b], X.indices[a:b], X.indptr[s : e + 1] - a),
        shape=(e - s, X.shape[1]),
        copy=False,
    )


def rows_to_dask(X, chunk_nnz: int, *, to_block: Callable | None = None, spread: bool = False):
    """Cut ``X`` into row chunks of about ``chunk_nnz`` non-zeros, as a Dask array.

    ``X`` is a SciPy CSR matrix or a Dask array of them; ``to_block`` makes each chunk (for
    example the copy to the GPU). Chunks read from a ``.h5ad`` (:func:`h5ad_rows`) go from the
    file to the GPU directly when ``to_block`` is the copy to the GPU. ``spread``: computed now,
    in runs over the workers of a distributed client (see :func:`_blocks_to_dask`).
    """
    import dask

    if is_dask(X):
        src = source_of(X)
        if src is not None:
            return h5ad_rows(
                src.path, src.shape, src.bounds, gpu=to_block is not None or _on_gpu(X),
                nnz=src.nnz, check=src.check, spread=spread,
            )  # fmt: skip
        X = X.map_blocks(to_block, meta=_gpu_meta(X.dtype)) if to_block else X
        return _blocks_to_dask(
            [(b, n) for b, n in zip(_blocks(X), X.chunks[0], strict=True)],
            X.shape[1], X.dtype, X._meta, spread=spread,
        ) if spread else X  # fmt: skip
    bounds = row_bounds(np.asarray(X.indptr), chunk_nnz)
    make = to_block or (lambda b: b)
    meta = _gpu_meta(X.dtype) if to_block else X[:0]
    blocks = [
        (dask.delayed(make)(_row_block(X, s, e)), e - s)
        for s, e in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return _blocks_to_dask(blocks, X.shape[1], X.dtype, meta, spread=spread)


def _on_gpu(X) -> bool:
    return is_gpu_array(X._meta)


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
    chunked: bool = True, check: bool = True, spread: bool = False,
):  # fmt: skip
    """``X`` of a ``.h5ad`` (CSR) as a lazy Dask array of the row chunks ``bounds``.

    On the GPU each chunk is read through pinned buffers straight into GPU memory. With
    ``check``, each chunk's values are checked for counts as it is read. ``spread``: read now,
    each worker of a distributed client its own run of chunks (see :func:`_blocks_to_dask`).
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
    X = _blocks_to_dask(blocks, shape[1], np.float32, meta, spread=spread)
    if not spread:
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


def _detected_part(block) -> tuple:
    return (_detected_block(block),)


def cells_per_gene(X) -> np.ndarray:
    """Count the cells in which each gene is detected (chunk by chunk when ``X`` is chunked)."""
    if not is_dask(X):
        return _detected_block(X)
    return _sum_over_chunks(X, _detected_part)[0]


def _qc_chunk(block, sets: np.ndarray) -> tuple:
    """Return a chunk's QC sums, per cell and per gene.

    Per cell (host, cells x [counts, genes detected, counts in each gene set]); per gene (cells
    detected, counts).
    """
    xp = _xp(block)
    if is_gpu_array(block) and hasattr(block, "indptr"):
        from . import _gpu

        if _gpu._plain(block):
            cells, detected, counts = _gpu.qc_sums(block, sets)
            return _host(cells), (_host(detected).astype(np.int64), _host(counts))
    w = xp.asarray(sets, dtype=xp.float32)
    if hasattr(block, "indptr"):
        data = block.data
        counts = xp.asarray(block.sum(axis=1)).ravel()
        genes = xp.diff(block.indptr).astype(xp.float64)
        stored_zeros = data <= 0  # stored values that are not detections
        if bool(stored_zeros.any()):
            flags = type(block)(
                (stored_zeros.astype(xp.float32), block.indices, block.indptr), shape=block.shape
            )
            genes -= xp.asarray(flags.sum(axis=1)).ravel()
        in_sets = xp.asarray(block @ w).reshape(block.shape[0], -1)
        gene_counts = xp.bincount(block.indices, weights=data, minlength=block.shape[1])
    else:
        counts = block.sum(axis=1)
        genes = (block > 0).sum(axis=1).astype(xp.float64)
        in_sets = block @ w
        gene_counts = block.sum(axis=0, dtype=xp.float64)
    cells = xp.column_stack([counts.astype(xp.float64), genes, in_sets.astype(xp.float64)])
    return _host(cells), (_detected_block(block), _host(gene_counts).astype(np.float64))


def qc_sums(X, sets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cell and per-gene QC sums of chunked counts ``X``, in one pass over the chunks.

    ``sets`` (genes x k, boolean): gene sets (mitochondrial, ribosomal...). Returns, as host
    arrays: cells x (2 + k) [counts, genes detected, counts in each set]; cells detected and
    counts per gene. The per-gene sums are added up where the chunks are.
    """
    import dask

    parts = [dask.delayed(_qc_chunk, nout=2)(b, sets) for b, _, _ in _rows(X)]
    total = dask.delayed(_add)(*_run_totals([genes for _, genes in parts]))
    out = dask.compute(total, *[cells for cells, _ in parts])
    (detected, gene_counts), cells = out[0], out[1:]
    return np.concatenate(cells, axis=0), detected, gene_counts


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
    if what.startswith("dask-cuda"):
        from . import _warmup

        client.run(_ready_gpu_worker)  # as this process is ready before its first step
        _warmup.preload_graph_library(wait=True)  # not alongside the workers' first steps
    logger.info(f"Dask cluster: {len(cluster.workers)} workers ({what})")
    return client


def _ready_gpu_worker() -> None:
    """Load what a GPU worker's tasks use (CuPy, cuBLAS, cuSPARSE, rapids-singlecell) up front.

    Otherwise the first step to use each pays for it on every worker (seconds for
    rapids-singlecell's import).
    """
    import cupy as cp
    import cupyx.scipy.sparse as csp
    import rapids_singlecell  # noqa: F401

    from . import _gpu  # noqa: F401

    a = cp.ones((64, 64), cp.float32)
    m = csp.random(64, 64, density=0.1, format="csr", dtype=cp.float32)
    float((a.T @ a).sum() + (m @ a).sum() + m.toarray().sum())


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
    if hasattr(block, "toarray"):
        return _dense(block)
    return _xp(block).array(block, dtype=np.float32)


def _dense(block):
    """Return a chunk as a dense float32 array, a copy only where it must convert (read only)."""
    xp = _xp(block)
    if hasattr(block, "toarray"):
        if xp is not np:
            from ._gpu import to_dense

            return to_dense(block)
        return np.asarray(block.toarray(), dtype=np.float32)
    return xp.asarray(block, dtype=xp.float32)


def _rows(X):
    offsets = np.cumsum([0, *X.chunks[0]])
    return list(zip(_blocks(X), offsets[:-1], offsets[1:], strict=True))


def _add(*parts: tuple) -> tuple:
    return tuple(sum(p[i] for p in parts) for i in range(len(parts[0])))


def _to_host(arrays: tuple) -> tuple:
    return tuple(_host(a) for a in arrays)


def _tree(parts: list):
    """One Delayed sum of ``parts``, added :data:`SUM_FAN_IN` at a time."""
    import dask

    while len(parts) > 1:
        parts = [
            dask.delayed(_add)(*parts[i : i + SUM_FAN_IN]) for i in range(0, len(parts), SUM_FAN_IN)
        ]
    return parts[0]


def _sum_then(parts: tuple, finish: Callable, args: tuple):
    return finish(_add(*parts), *args)


def _reduce_chunks(X, part: Callable, *row_arrays, finish: Callable = _to_host, args=()):
    """``finish(sum over the chunks of part(chunk, *rows of row_arrays), *args)``, as a Delayed.

    The partial sums are added where they are computed: first over each worker's run of chunks
    (:func:`chunk_workers`), then the one total per worker on one of them, where ``finish`` runs
    too (for example the eigendecomposition of PCA), so that only its result comes to this
    process.
    """
    import dask

    parts = [dask.delayed(part)(b, *[a[s:e] for a in row_arrays]) for b, s, e in _rows(X)]
    return dask.delayed(_sum_then)(tuple(_run_totals(parts)), finish, tuple(args))


def _run_totals(parts: list) -> list:
    """Return the sums of per-chunk ``parts`` over each worker's run of chunks (one per worker)."""
    runs: dict = {}
    for p, owner in zip(parts, chunk_workers(len(parts)), strict=True):
        runs.setdefault(owner, []).append(p)
    return [_tree(run) for run in runs.values()]


def _sum_over_chunks(X, part, *row_arrays) -> list[np.ndarray]:
    """Sum ``part(chunk, *rows of row_arrays)`` (a tuple of arrays) over the chunks.

    Added up where the chunks are (see :func:`_reduce_chunks`); only the total comes to this
    process, as host arrays.
    """
    import dask

    (total,) = dask.compute(_reduce_chunks(X, part, *row_arrays))
    return list(total)


def persist_chunks(X, blocks: list | None = None):
    """Compute the chunks of ``X`` (or the Delayed ``blocks`` of its shape) and keep them.

    With a distributed client they stay on the workers, and this waits for them, so that the step
    that asked for them is the one timed for them. The tasks go as they are, without Dask's graph
    optimisation, as every other computation on the chunks does: a key sent once optimised and once
    not is two different tasks to the scheduler ("Detected different run_spec").
    """
    import dask

    done = dask.persist(*(blocks if blocks is not None else _blocks(X)), optimize_graph=False)
    meta = X._meta if blocks is None else _xp(X._meta).empty((0, 0), dtype=np.float32)
    dtype = X.dtype if blocks is None else np.float32
    out = _blocks_to_dask(list(zip(done, X.chunks[0], strict=True)), X.shape[1], dtype, meta)
    if distributed_client() is not None:
        _wait_on_workers(out)
    return out


def _map_chunks(X, fn, *args, row_arrays=()):
    """``fn(chunk, *rows of row_arrays, *args)`` for every chunk, as a new (dense) chunked array."""
    import dask

    blocks = [dask.delayed(fn)(b, *[a[s:e] for a in row_arrays], *args) for b, s, e in _rows(X)]
    return persist_chunks(X, blocks)


def _dtx_chunk(block, design):
    xp = _xp(block)
    d = xp.asarray(design.astype(np.float32))
    return ((d.T @ _dense(block)).astype(xp.float64),)


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
    from .pp._pca import column_sum

    xp, x = _xp(block), _dense(block)
    return column_sum(x, xp), column_sum(x * x, xp)


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

    return gram(_dense(block), _xp(block))


def _scores_chunk(block, mean, pcs):
    from .pp._pca import project

    xp = _xp(block)
    return _host(project(_dense(block), xp.asarray(mean), xp.asarray(pcs)))


def _components_host(sums: tuple, n: int, n_comps: int) -> tuple:
    from .pp._pca import components

    xtx, total = sums
    return _to_host(components(xtx, total, n, n_comps, _xp(xtx)))


def pca(X, n_comps: int):
    """PCA of chunked ``X`` through its genes x genes covariance (see ``pp._pca.pca_from_gram``).

    The covariance is summed where the chunks are and, on GPUs, decomposed there too, so that
    only the loadings come to this process; the scores are computed where the chunks are.
    Returns host arrays: scores, loadings, variances, variance ratios.
    """
    import dask

    from .pp._pca import components

    if _on_gpu(X):  # decomposed on a worker's GPU
        (comps,) = dask.compute(
            _reduce_chunks(X, _gram_chunk, finish=_components_host, args=(X.shape[0], n_comps))
        )
        mean, pcs, var, ratio = comps
    else:  # here, where NumPy has all the cores (a CPU worker has one thread)
        xtx, total = _sum_over_chunks(X, _gram_chunk)
        mean, pcs, var, ratio = components(xtx, total, X.shape[0], n_comps, np)
    scores = dask.compute(*[dask.delayed(_scores_chunk)(b, mean, pcs) for b, _, _ in _rows(X)])
    return np.concatenate(scores, axis=0), pcs, var, ratio
