"""The chunked path: ``X`` as a Dask array of row chunks, on the CPU (SciPy) or the GPU (CuPy).

Each step maps over the chunks with the same small functions on both backends; with a
``distributed`` client active (``LocalCluster``, or dask-cuda's ``LocalCUDACluster`` with one
worker per GPU) the chunks are spread over its workers. Dask is imported only here.
"""

from __future__ import annotations

import os
import sys
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


def _chunk_array(
    tasks: list, n_cols: int, dtype, meta, *, name: str | None = None, spread: bool = False
):
    """One Dask array whose row chunk ``i`` is ``fn(*args)`` for ``(fn, args, n_rows)`` in ``tasks``.

    ``args`` may hold Delayed chunks of other arrays; chunks of no rows are left out. Each task is
    keyed as the array's chunk itself, ``(name, i, 0)`` (``name``: given, or new), so that no
    alias task stands between a chunk and the steps that read it: chunks built with
    ``from_delayed`` and ``concatenate`` cost two alias tasks per chunk in every later step (22
    of the 55-125 tasks of a step over 11 chunks). ``spread``: see :func:`_place`.
    """
    import uuid

    import dask
    import dask.array as da

    tasks = [(fn, args, int(n)) for fn, args, n in tasks if n]
    if name is None:  # named after what it computes, as the dashboard's task stream shows it
        fn = tasks[0][0] if tasks else _same
        name = f"{getattr(fn, '__name__', 'chunk').strip('_')}-{uuid.uuid4().hex}"
    graph: dict = {}
    for i, (fn, args, _) in enumerate(tasks):
        graph.update(
            dask.delayed(fn, pure=True)(*args, dask_key_name=(name, i, 0)).__dask_graph__()
        )
    rows = tuple(n for _, _, n in tasks)
    X = da.Array(graph, name, chunks=(rows, (n_cols,)), dtype=dtype, meta=meta)
    return _place(X) if spread else X


def _place(X):
    """Compute ``X``'s chunks now over a distributed client's workers, in contiguous runs, and wait.

    One run per worker (:func:`chunk_workers`); the later per-chunk tasks follow their chunks, so
    each worker keeps working on its own run of cells. Returns ``X`` as it is without a client.
    """
    import dask.array as da

    client = distributed_client()
    if client is None:
        return X
    blocks = _blocks(X)
    owners = chunk_workers(len(blocks))
    placed: list = [None] * len(blocks)
    for worker in dict.fromkeys(owners):
        runs = [i for i, o in enumerate(owners) if o == worker]
        # a preference, not a restriction: chunks of a worker that is lost are read again on
        # another (a strict restriction left them waiting for it for ever)
        done = client.persist([blocks[i] for i in runs], workers=[worker], allow_other_workers=True)
        for i, d in zip(runs, done, strict=True):
            placed[i] = d
    graph: dict = {}
    for d in placed:
        graph.update(d.__dask_graph__())  # each chunk's own key, now a future
    out = da.Array(graph, X.name, chunks=X.chunks, dtype=X.dtype, meta=X._meta)
    wait_for(out)
    return out


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
    in runs over the workers of a distributed client (see :func:`_place`).
    """
    if is_dask(X):
        src = source_of(X)
        if src is not None:
            return h5ad_rows(
                src.path, src.shape, src.bounds, gpu=to_block is not None or on_gpu(X),
                nnz=src.nnz, check=src.check, spread=spread,
            )  # fmt: skip
        X = X.map_blocks(to_block, meta=_gpu_meta(X.dtype)) if to_block else X
        return _place(X) if spread else X
    bounds = row_bounds(np.asarray(X.indptr), chunk_nnz)
    make = to_block or _same
    meta = _gpu_meta(X.dtype) if to_block else X[:0]
    tasks = [
        (make, (_row_block(X, s, e),), e - s) for s, e in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return _chunk_array(tasks, X.shape[1], X.dtype, meta, spread=spread)


def _same(block):
    return block


def on_gpu(X) -> bool:
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
    each worker of a distributed client its own run of chunks (see :func:`_place`).
    """
    from dask.base import tokenize

    if gpu:
        meta = _gpu_meta(np.float32)
    else:
        import scipy.sparse as sp

        meta = sp.csr_matrix((0, 0), dtype=np.float32)
    # a deterministic name (see _SOURCES) that changes when the file does
    stat = os.stat(path)
    version = (stat.st_size, stat.st_mtime_ns)
    tasks = [
        (read_rows, (path, s, e, shape[1], gpu, check), e - s)
        for s, e in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    # read onto the workers (spread) is another array than the lazy one: source_of says "on disk"
    name = f"read-rows-{tokenize(path, version, tuple(bounds), gpu, check, spread)}"
    X = _chunk_array(tasks, shape[1], np.float32, meta, name=name, spread=spread)
    if not spread:
        _SOURCES[X.name] = H5Source(path, tuple(shape), nnz, tuple(bounds), chunked, check)
    return X


def _open_h5(path: str):
    """Open the input file; on a Dask worker that cannot, say which worker and what it needs."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as e:
        try:
            from distributed import get_worker

            where = f"Dask worker {get_worker().address}"
        except (ImportError, ValueError):  # not on a worker: read() has checked the file already
            raise e from None
        from ._errors import InputError

        raise InputError(
            f"{where} cannot read {path} ({e}). Every worker reads its own rows of the input, so "
            "the file must be at this same path on every worker's machine (shared storage)."
        ) from e


def read_rows(path: str, s: int, e: int, n_cols: int, gpu: bool, check: bool = True):
    """Rows ``s:e`` of ``X`` of a ``.h5ad`` (CSR) as float32/int32 CSR, on the GPU or the host.

    ``check`` refuses values that are not counts (:func:`scplaybook._counts.not_counts`).
    """
    with _open_h5(path) as f:
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
    from ._counts import not_counts
    from ._errors import InputError

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
    offsets = np.cumsum([0, *X.chunks[0]])
    tasks = []
    for b, s, e in zip(_blocks(X), offsets[:-1], offsets[1:], strict=True):
        rows = np.flatnonzero(keep[s:e])
        tasks.append((_take_block, (b, rows, 0), rows.size))
    return _chunk_array(tasks, X.shape[1], X.dtype, X._meta)


def take_cols(X, cols: np.ndarray):
    """Columns ``cols`` (sorted positions) of a chunked ``X``."""
    return X.map_blocks(
        _take_block, cols, 1, chunks=(X.chunks[0], (len(cols),)), meta=X._meta, dtype=X.dtype
    )


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
    return xp_of(blocks[0]).concatenate(blocks, axis=0)


def compute_rows(parts: list, sizes, *others) -> tuple:
    """Compute per-chunk row blocks into one host array, and the Delayed ``others``, in one go.

    ``parts``: Delayed host arrays of consecutive rows, ``sizes[i]`` rows each (one per chunk,
    in row order). With a distributed client all are submitted at once and each block is copied
    into place as it arrives, while later chunks still compute (gathering them all at the end
    and concatenating was most of PCA's 0.38 s share at 1.3M cells, BENCHMARKS.md). Returns the
    rows, then the results of ``others``.
    """
    import dask

    client = distributed_client()
    if client is None:
        done = dask.compute(*others, *parts)
        return (np.concatenate(done[len(others) :], axis=0), *done[: len(others)])
    from distributed import as_completed

    offsets = np.cumsum([0, *sizes])
    futures = client.compute([*others, *parts], optimize_graph=False)
    where = {f.key: i for i, f in enumerate(futures)}
    got: list = [None] * len(others)
    rows = None
    for future, value in as_completed(futures, with_results=True):
        i = where[future.key] - len(others)
        if i < 0:
            got[i + len(others)] = value
            continue
        if rows is None:
            rows = np.empty((int(offsets[-1]), *value.shape[1:]), dtype=value.dtype)
        rows[offsets[i] : offsets[i + 1]] = value
    return (rows, *got)


def distributed_client():
    """Return the active ``distributed`` client (e.g. on a dask-cuda ``LocalCUDACluster``), or ``None``."""
    if "distributed" not in sys.modules:  # no client without it; importing it takes about 1 s
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


# --- regress-out, scaling and PCA over row chunks (with a distributed client: on its workers) ---
# Each runs one pass that sums small per-chunk results (genes x covariates, per-gene moments, the
# genes x genes Gram matrix) where the chunks are, in a tree, so that only the total reaches this
# process; then, where X changes, one pass that maps every chunk.

#: How many partial sums one task of the tree adds up.
SUM_FAN_IN = 8


def xp_of(block):
    if is_gpu_array(block):
        import cupy

        return cupy
    return np


def host_array(a) -> np.ndarray:
    return a.get() if is_gpu_array(a) else np.asarray(a)


def dense_copy(block):
    """Return a dense float32 copy of a chunk (never change chunks in place: Dask may reuse them)."""
    if hasattr(block, "toarray"):
        return dense(block)
    return xp_of(block).array(block, dtype=np.float32)


def dense(block):
    """Return a chunk as a dense float32 array, a copy only where it must convert (read only)."""
    xp = xp_of(block)
    if hasattr(block, "toarray"):
        if xp is not np:
            from ._gpu import to_dense

            return to_dense(block)
        return np.asarray(block.toarray(), dtype=np.float32)
    return xp.asarray(block, dtype=xp.float32)


def row_blocks(X):
    offsets = np.cumsum([0, *X.chunks[0]])
    return list(zip(_blocks(X), offsets[:-1], offsets[1:], strict=True))


def add_parts(*parts: tuple) -> tuple:
    return tuple(sum(p[i] for p in parts) for i in range(len(parts[0])))


def all_to_host(arrays: tuple) -> tuple:
    return tuple(host_array(a) for a in arrays)


def _tree(parts: list):
    """One Delayed sum of ``parts``, added :data:`SUM_FAN_IN` at a time."""
    import dask

    while len(parts) > 1:
        parts = [
            dask.delayed(add_parts)(*parts[i : i + SUM_FAN_IN])
            for i in range(0, len(parts), SUM_FAN_IN)
        ]
    return parts[0]


def _sum_then(parts: tuple, finish: Callable, args: tuple):
    return finish(add_parts(*parts), *args)


def reduce_chunks(X, part: Callable, *row_arrays, finish: Callable = all_to_host, args=()):
    """``finish(sum over the chunks of part(chunk, *rows of row_arrays), *args)``, as a Delayed.

    The partial sums are added where they are computed: first over each worker's run of chunks
    (:func:`chunk_workers`), then the one total per worker on one of them, where ``finish`` runs
    too (for example the eigendecomposition of PCA), so that only its result comes to this
    process.
    """
    import dask

    parts = [dask.delayed(part)(b, *[a[s:e] for a in row_arrays]) for b, s, e in row_blocks(X)]
    return dask.delayed(_sum_then)(tuple(run_totals(parts)), finish, tuple(args))


def run_totals(parts: list) -> list:
    """Return the sums of per-chunk ``parts`` over each worker's run of chunks (one per worker)."""
    runs: dict = {}
    for p, owner in zip(parts, chunk_workers(len(parts)), strict=True):
        runs.setdefault(owner, []).append(p)
    return [_tree(run) for run in runs.values()]


def sum_over_chunks(X, part, *row_arrays) -> list[np.ndarray]:
    """Sum ``part(chunk, *rows of row_arrays)`` (a tuple of arrays) over the chunks.

    Added up where the chunks are (see :func:`reduce_chunks`); only the total comes to this
    process, as host arrays.
    """
    import dask

    (total,) = dask.compute(reduce_chunks(X, part, *row_arrays))
    return list(total)


def persist_chunks(X, *, wait: bool = True):
    """Compute the chunks of ``X`` and keep them (with a distributed client: on its workers).

    With a client this waits for them unless ``wait=False`` (see :func:`wait_for`), so that the
    step that asked for them is the one timed for them. The tasks go as they are, without Dask's
    graph optimisation, as every other computation on the chunks does: a key sent once optimised
    and once not is two different tasks to the scheduler ("Detected different run_spec").
    """
    import dask

    (out,) = dask.persist(X, optimize_graph=False)
    if wait:
        wait_for(out)
    return out


def wait_for(X) -> None:
    """Wait until the persisted chunks of ``X`` are computed (nothing to wait for without a client)."""
    if distributed_client() is not None:
        from distributed import futures_of, wait

        wait(futures_of(X))


def map_chunks(X, fn, *args, row_arrays=()):
    """``fn(chunk, *rows of row_arrays, *args)`` for every chunk, as a new (dense) chunked array."""
    tasks = [(fn, (b, *[a[s:e] for a in row_arrays], *args), e - s) for b, s, e in row_blocks(X)]
    meta = xp_of(X._meta).empty((0, 0), dtype=np.float32)
    n_cols = X.shape[1]
    return persist_chunks(_chunk_array(tasks, n_cols, np.float32, meta))
