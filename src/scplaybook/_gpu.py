"""GPU plumbing: the memory pool, fast host/GPU copies and CSR subsetting without copies of the whole.

Only called on the GPU path; CuPy is imported inside the functions.
"""

from __future__ import annotations

import atexit
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._settings import logger

#: Bytes per pinned staging buffer for host <-> GPU copies.
STAGE_BYTES = 1 << 27
#: Threads that read a file in parallel, and bytes per read, for file -> GPU copies.
READ_THREADS = 8
READ_PIECE = 1 << 24
_preloaded = False  # cuGraph started in this process (preload_graph_library)
_pool = None  # (the RMM pool, the adaptor on top of it that counts the bytes in use)


def use_memory_pool(initial_bytes: int = 0) -> bool:
    """Serve CuPy's and RAPIDS' allocations from an RMM pool (as the original notebook does), once.

    The pool starts at ``initial_bytes`` (at least 1 GiB; :func:`scplaybook.get.to_gpu` passes
    what the analysis of the data is expected to need, so that the pool does not grow, and
    fragment, step by step) and grows on demand. Returns whether the pool is in use. Without RMM,
    or with ``SCPLAYBOOK_NO_POOL`` set, CuPy's own pool stays.
    """
    global _pool
    if _pool is not None:
        return True
    if os.environ.get("SCPLAYBOOK_NO_POOL"):
        return False
    try:
        import cupy as cp
        import rmm
        from rmm.allocators.cupy import rmm_cupy_allocator
    except ImportError:
        logger.debug("RMM is not installed: CuPy's own memory pool is used")
        return False
    free, total = cp.cuda.runtime.memGetInfo()
    size = min(max(initial_bytes, 2**30), int(free * 0.9)) // 2**28 * 2**28
    pool = rmm.mr.PoolMemoryResource(rmm.mr.CudaMemoryResource(), initial_pool_size=size)
    counted = rmm.mr.LimitingResourceAdaptor(pool, allocation_limit=int(total))
    rmm.mr.set_current_device_resource(counted)
    cp.cuda.set_allocator(rmm_cupy_allocator)
    _pool = (pool, counted)
    return True


def free_bytes() -> int:
    """Memory that new GPU allocations can still get: free on the device plus unused in the pool."""
    import cupy as cp

    if _pool is None:
        cp.get_default_memory_pool().free_all_blocks()  # CuPy's cached blocks: back to the device
    free = int(cp.cuda.runtime.memGetInfo()[0])
    if _pool is not None:
        pool, counted = _pool
        free += max(0, pool.pool_size() - counted.get_allocated_bytes())
    return free


def _staged(n_bytes: int, copy_chunk, *, align: int = 1) -> None:
    """Copy ``n_bytes`` in pieces through two pinned buffers, so host copies overlap the DMA."""
    import cupy as cp
    import cupyx

    if n_bytes == 0:
        return
    step = max(align, min(STAGE_BYTES, n_bytes) // align * align)
    bufs = [cupyx.empty_pinned(step, np.uint8) for _ in range(2)]
    streams = [cp.cuda.Stream(non_blocking=True) for _ in range(2)]
    for i, start in enumerate(range(0, n_bytes, step)):
        buf, stream = bufs[i % 2], streams[i % 2]
        stream.synchronize()
        copy_chunk(start, min(start + step, n_bytes), buf, stream)
    for stream in streams:
        stream.synchronize()


def to_device(a: np.ndarray, dtype=None):
    """Copy a host array to a new CuPy array through pinned staging buffers (about 5x pageable speed)."""
    import cupy as cp

    a = np.ascontiguousarray(a if dtype is None else a.astype(dtype, copy=False))
    out = cp.empty(a.shape, a.dtype)
    if a.nbytes < STAGE_BYTES:
        out.set(a)
        return out
    src, dst = a.reshape(-1).view(np.uint8), out.reshape(-1).view(cp.uint8)

    def piece(s, e, buf, stream):
        np.copyto(buf[: e - s], src[s:e])
        dst[s:e].set(buf[: e - s], stream=stream)

    _staged(a.nbytes, piece)
    return out


def file_extents(dset, start: int, stop: int) -> list[tuple[int, int, int]] | None:
    """Where elements ``start:stop`` of a 1-D HDF5 dataset lie in its file, as byte ranges.

    Returns ``(file offset, offset in the output, bytes)`` triples, adjacent ranges merged, for a
    dataset stored plainly (contiguous, or in chunks without filters, native byte order), so that
    it can be read with plain parallel ``pread`` calls; ``None`` when HDF5 itself must decode it
    (compression, other filters, chunks never written, external or virtual storage).
    """
    import h5py

    item = dset.dtype.itemsize
    plist = dset.id.get_create_plist()
    if stop <= start:
        return []
    if not dset.dtype.isnative or plist.get_nfilters() or plist.get_external_count():
        return None
    layout = plist.get_layout()
    if layout == h5py.h5d.CONTIGUOUS:
        offset = dset.id.get_offset()
        return None if offset is None else [(offset + start * item, 0, (stop - start) * item)]
    if layout != h5py.h5d.CHUNKED or len(dset.chunks) != 1:
        return None
    c = dset.chunks[0]
    first, last = start // c, (stop - 1) // c
    where = np.full(last - first + 1, -1, dtype=np.int64)

    def note(info) -> None:
        k = info.chunk_offset[0] // c
        if first <= k <= last:
            where[k - first] = info.byte_offset

    if hasattr(dset.id, "chunk_iter"):
        dset.id.chunk_iter(note)
    else:  # HDF5 < 1.12.3
        for i in range(dset.id.get_num_chunks()):
            note(dset.id.get_chunk_info(i))
    if (where < 0).any():
        return None
    k = np.arange(first, last + 1, dtype=np.int64)
    lo, hi = np.maximum(k * c, start), np.minimum((k + 1) * c, stop)
    src = where + (lo - k * c) * item
    dst, size = (lo - start) * item, (hi - lo) * item
    # merge chunks that follow each other in the file
    new = np.r_[True, src[1:] != src[:-1] + size[:-1]]
    ends = np.cumsum(size)
    starts = np.flatnonzero(new)
    sizes = np.diff(np.r_[ends[starts] - size[starts], ends[-1]])
    return [
        (int(a), int(b), int(n)) for a, b, n in zip(src[starts], dst[starts], sizes, strict=True)
    ]


def pread_into(fd: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` from file descriptor ``fd`` at ``offset`` (``os.preadv`` releases the GIL)."""
    got, n = 0, len(view)
    while got < n:
        r = os.preadv(fd, [view[got:]], offset + got)
        if r == 0:
            raise OSError(f"the file ends {n - got} bytes short of a dataset: it is truncated")
        got += r


def _extents_to_device(path: str, extents: list[tuple[int, int, int]], out) -> None:
    """Read file byte ranges into the CuPy array ``out`` with parallel ``pread`` into pinned buffers."""
    import cupy as cp
    import cupyx

    dst = out.reshape(-1).view(cp.uint8)
    pieces = [
        (src + s, at + s, min(READ_PIECE, n - s))
        for src, at, n in extents
        for s in range(0, n, READ_PIECE)
    ]
    if not pieces:
        return
    n_threads = max(1, min(READ_THREADS, len(pieces), os.cpu_count() or 1))
    device = out.device

    def work(first: int) -> None:
        with device:
            buf = cupyx.empty_pinned(max(n for _, _, n in pieces), np.uint8)
            stream = cp.cuda.Stream(non_blocking=True)
            for src, at, n in pieces[first::n_threads]:
                stream.synchronize()  # the previous copy out of buf is done
                pread_into(fd, memoryview(buf[:n]), src)
                dst[at : at + n].set(buf[:n], stream=stream)
            stream.synchronize()

    fd = os.open(path, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(n_threads, thread_name_prefix="scplaybook-read") as pool:
            list(pool.map(work, range(n_threads)))
    finally:
        os.close(fd)


def h5_to_device(dset, start: int, stop: int):
    """Read ``dset[start:stop]`` (a 1-D HDF5 dataset) into a new CuPy array.

    A plainly stored dataset (see :func:`file_extents`) is read with parallel ``pread`` calls into
    pinned buffers and copied to the GPU as the pieces arrive; anything else goes through HDF5 into
    the pinned buffers.
    """
    import cupy as cp

    out = cp.empty(stop - start, dset.dtype)
    extents = file_extents(dset, start, stop)
    if extents is not None:
        _extents_to_device(dset.file.filename, extents, out)
        return out
    item = np.dtype(dset.dtype).itemsize
    dst = out.view(cp.uint8)

    def piece(s, e, buf, stream):
        n = (e - s) // item
        view = buf[: e - s].view(dset.dtype)
        first = start + s // item
        dset.read_direct(view, np.s_[first : first + n], np.s_[0:n])
        dst[s:e].set(buf[: e - s], stream=stream)

    _staged(out.nbytes, piece, align=item)
    return out


def to_host(a) -> np.ndarray:
    """Copy a CuPy array to a new host array through pinned staging buffers."""
    import cupy as cp

    a = cp.ascontiguousarray(a)
    if a.nbytes < STAGE_BYTES:
        return a.get()
    out = np.empty(a.shape, a.dtype)
    src, dst = a.reshape(-1).view(cp.uint8), out.reshape(-1).view(np.uint8)

    def piece(s, e, buf, stream):
        src[s:e].get(out=buf[: e - s], stream=stream)
        stream.synchronize()
        np.copyto(dst[s:e], buf[: e - s])

    _staged(a.nbytes, piece)
    return out


def csr_to_gpu(X):
    """Copy a host CSR matrix to a CuPy CSR matrix (float32 data, int32 indices; no format checks).

    The matrix must have fewer than 2^31 non-zeros (CuPy's sparse matrices index with int32).
    """
    import cupy as cp
    import cupyx.scipy.sparse as csp

    if X.nnz >= 2**31:
        raise ValueError(f"{X.nnz} non-zeros do not fit one CuPy CSR matrix: use row chunks")
    data = to_device(X.data, np.float32)
    indices = to_device(X.indices, np.int32)
    indptr = cp.asarray(X.indptr.astype(np.int32, copy=False))
    return csp.csr_matrix((data, indices, indptr), shape=X.shape, copy=False)


def csr_to_host(X):
    """Copy a CuPy CSR matrix to a SciPy CSR matrix."""
    import scipy.sparse as sp

    return sp.csr_matrix(
        (to_host(X.data), to_host(X.indices), X.indptr.get()), shape=X.shape, copy=False
    )


def array_to_host(x):
    """Copy any CuPy array or CuPy sparse matrix to its host counterpart."""
    import cupyx.scipy.sparse as csp

    if csp.issparse(x):
        return csr_to_host(x.tocsr())
    return to_host(x)


_SOURCE_ROWS = r"""
extern "C" __global__ void source_rows(const long long* new_indptr, const long long* starts,
                                       long long n_rows, long long first, long long n,
                                       long long* src) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        long long j = first + i, lo = 0, hi = n_rows;
        while (hi - lo > 1) {  // the last row starting at or before j
            long long mid = (lo + hi) >> 1;
            if (new_indptr[mid] <= j) lo = mid; else hi = mid;
        }
        src[i] = starts[lo] + (j - new_indptr[lo]);
    }
}
"""
_kernels: dict[str, object] = {}
_BLOCK_NNZ = 1 << 27


def take_rows(X, rows):
    """Rows ``rows`` (sorted integer positions) of a CuPy CSR matrix, as a new CSR matrix.

    One small kernel finds each kept entry's source; ``data`` and ``indices`` are gathered in
    blocks, so the extra memory is bounded whatever the matrix size.
    """
    import cupy as cp
    import cupyx.scipy.sparse as csp

    kernel = _kernel("source_rows", _SOURCE_ROWS)
    rows = cp.asarray(rows, dtype=cp.int64)
    indptr = X.indptr.astype(cp.int64)
    starts = indptr[rows]
    new_indptr = cp.zeros(rows.size + 1, cp.int64)
    cp.cumsum(indptr[rows + 1] - starts, out=new_indptr[1:])
    nnz = int(new_indptr[-1])
    data = cp.empty(nnz, X.data.dtype)
    indices = cp.empty(nnz, X.indices.dtype)
    for first in range(0, nnz, _BLOCK_NNZ):
        n = min(_BLOCK_NNZ, nnz - first)
        src = cp.empty(n, cp.int64)
        kernel(
            *_grid(n),
            (new_indptr, starts, np.int64(rows.size), np.int64(first), np.int64(n), src),
        )
        cp.take(X.data, src, out=data[first : first + n])
        cp.take(X.indices, src, out=indices[first : first + n])
        del src
    return csp.csr_matrix(
        (data, indices, new_indptr.astype(X.indptr.dtype)),
        shape=(rows.size, X.shape[1]),
        copy=False,
    )


_COLS = r"""
extern "C" __global__ void count_kept(const int* indptr, const int* indices, const int* new_col,
                                      long long n_rows, long long* counts) {
    for (long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x; r < n_rows;
         r += (long long)gridDim.x * blockDim.x) {
        long long c = 0;
        for (int j = indptr[r]; j < indptr[r + 1]; ++j) c += new_col[indices[j]] >= 0;
        counts[r] = c;
    }
}
extern "C" __global__ void copy_kept(const int* indptr, const int* indices, const float* data,
                                     const int* new_col, const long long* new_indptr,
                                     long long n_rows, int* out_indices, float* out_data) {
    for (long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x; r < n_rows;
         r += (long long)gridDim.x * blockDim.x) {
        long long o = new_indptr[r];
        for (int j = indptr[r]; j < indptr[r + 1]; ++j) {
            int c = new_col[indices[j]];
            if (c >= 0) { out_indices[o] = c; out_data[o] = data[j]; ++o; }
        }
    }
}
extern "C" __global__ void detected(const float* data, const int* indices, long long nnz,
                                    unsigned int* counts) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < nnz;
         i += (long long)gridDim.x * blockDim.x)
        if (data[i] > 0) atomicAdd(&counts[indices[i]], 1u);
}
"""

#: CSR to dense (row-major): a warp per row scatters the row's values into a zeroed matrix.
_DENSE = r"""
extern "C" __global__ void csr_to_dense(const int* indptr, const int* indices, const float* data,
                                        long long n_rows, long long n_cols, float* out) {
    const int lane = threadIdx.x & 31;
    const long long n_warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long r = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5; r < n_rows;
         r += n_warps)
        for (int j = indptr[r] + lane; j < indptr[r + 1]; j += 32)
            atomicAdd(&out[r * n_cols + indices[j]], data[j]);
}
"""

#: One pass of QC sums over a CSR matrix: a warp per row (coalesced reads), the row's sums
#: reduced across the warp; the per-gene sums with atomics.
_QC = r"""
extern "C" __global__ void qc_rows(const int* indptr, const int* indices, const float* data,
                                   const unsigned char* flags, long long n_rows, int n_sets,
                                   double* cells, unsigned int* gene_detected,
                                   double* gene_counts) {
    const int lane = threadIdx.x & 31, n_out = 2 + n_sets;
    const long long n_warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long r = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5; r < n_rows;
         r += n_warps) {
        double acc[10] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        for (int j = indptr[r] + lane; j < indptr[r + 1]; j += 32) {
            const float v = data[j];
            const int g = indices[j];
            acc[0] += v;
            if (v > 0) { acc[1] += 1; atomicAdd(&gene_detected[g], 1u); }
            atomicAdd(&gene_counts[g], (double)v);
            const unsigned char f = flags[g];
            for (int k = 0; k < n_sets; ++k) if (f & (1 << k)) acc[2 + k] += v;
        }
        for (int k = 0; k < n_out; ++k) {
            double x = acc[k];
            for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffffu, x, o);
            if (lane == 0) cells[r * n_out + k] = x;
        }
    }
}
"""


def _kernel(name: str, source: str):
    import cupy as cp

    if source not in _kernels:
        _kernels[source] = cp.RawModule(code=source)
    return _kernels[source].get_function(name)


def _plain(X) -> bool:
    import cupy as cp

    return X.data.dtype == cp.float32 and X.indices.dtype == cp.int32 and X.indptr.dtype == cp.int32


def _grid(n: int) -> tuple[tuple[int], tuple[int]]:
    return (max(1, min(65535, (n + 255) // 256)),), (256,)


def take_cols(X, cols):
    """Columns ``cols`` (sorted integer positions) of a CuPy CSR matrix, as a new CSR matrix.

    Two small kernels (count the kept entries of each row, then copy them); other dtypes than
    float32 data with int32 indices go through CuPy's generic operations.
    """
    import cupy as cp
    import cupyx.scipy.sparse as csp

    new_col = cp.full(X.shape[1], -1, cp.int32)
    new_col[cp.asarray(cols)] = cp.arange(len(cols), dtype=cp.int32)
    n = X.shape[0]
    if not _plain(X):
        mapped = new_col[X.indices]
        keep = mapped >= 0
        before = cp.zeros(X.nnz + 1, cp.int64)
        cp.cumsum(keep, dtype=cp.int64, out=before[1:])
        new_indptr = before[X.indptr].astype(X.indptr.dtype)
        return csp.csr_matrix(
            (X.data[keep], mapped[keep], new_indptr), shape=(n, len(cols)), copy=False
        )
    counts = cp.empty(n, cp.int64)
    _kernel("count_kept", _COLS)(*_grid(n), (X.indptr, X.indices, new_col, np.int64(n), counts))
    new_indptr = cp.zeros(n + 1, cp.int64)
    cp.cumsum(counts, out=new_indptr[1:])
    nnz = int(new_indptr[-1])
    indices, data = cp.empty(nnz, cp.int32), cp.empty(nnz, cp.float32)
    _kernel("copy_kept", _COLS)(
        *_grid(n),
        (X.indptr, X.indices, X.data, new_col, new_indptr, np.int64(n), indices, data),
    )
    return csp.csr_matrix(
        (data, indices, new_indptr.astype(cp.int32)), shape=(n, len(cols)), copy=False
    )


def cells_per_gene(X) -> np.ndarray:
    """Count, for each column of a CuPy CSR matrix, the rows with a positive value (one kernel)."""
    import cupy as cp

    if not _plain(X):
        return cp.bincount(X.indices[X.data > 0], minlength=X.shape[1]).get()
    counts = cp.zeros(X.shape[1], cp.uint32)
    _kernel("detected", _COLS)(*_grid(X.nnz), (X.data, X.indices, np.int64(X.nnz), counts))
    return counts.get().astype(np.int64)


#: Gene sets the QC kernel counts in one pass (one bit each of a byte of flags per gene).
QC_MAX_SETS = 8


def qc_sums(X, sets: np.ndarray):
    """QC sums of a CuPy CSR matrix (float32 data, int32 indices) in one kernel.

    ``sets``: genes x k boolean (k <= QC_MAX_SETS gene sets). Returns CuPy arrays: cells x (2 + k) float64
    [counts, genes detected, counts in each set], and per gene the cells detected (uint32) and
    the counts (float64).
    """
    import cupy as cp

    n_rows, n_genes = X.shape
    k = sets.shape[1]
    if k > QC_MAX_SETS:  # callers with more sets take the sparse-product path (pp._qc._qc_chunk)
        raise ValueError(f"{k} gene sets: at most {QC_MAX_SETS} fit the QC kernel's flags")
    flags = cp.asarray(
        (sets.astype(np.uint8) << np.arange(k, dtype=np.uint8)).sum(axis=1, dtype=np.uint8)
    )
    cells = cp.empty((n_rows, 2 + k), cp.float64)
    detected = cp.zeros(n_genes, cp.uint32)
    counts = cp.zeros(n_genes, cp.float64)
    if n_rows:
        _kernel("qc_rows", _QC)(
            *_warp_grid(n_rows),
            (X.indptr, X.indices, X.data, flags, np.int64(n_rows), np.int32(k), cells, detected, counts),
        )  # fmt: skip
    return cells, detected, counts


#: Each row's sum in float64: a warp per row, the lanes' partial sums added by shuffles.
_ROW_SUMS = r"""
extern "C" __global__ void row_sums(const int* indptr, const float* data, long long n_rows,
                                    double* out) {
    const int lane = threadIdx.x & 31;
    const long long n_warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long r = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5; r < n_rows;
         r += n_warps) {
        double acc = 0;
        for (int j = indptr[r] + lane; j < indptr[r + 1]; j += 32) acc += data[j];
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffff, acc, o);
        if (lane == 0) out[r] = acc;
    }
}
"""


def row_sums(X):
    """Each row's sum of a CuPy CSR matrix, as a CuPy float64 vector.

    One pass over the values; CuPy's ``X.sum(axis=1)`` first puts a matrix of unknown index
    order into canonical form (a sort of every entry: 0.6-0.8 s at 200k cells, H200).
    """
    import cupy as cp

    if not _plain(X):
        return cp.asarray(X.sum(axis=1), dtype=cp.float64).ravel()
    out = cp.zeros(X.shape[0], cp.float64)
    if X.shape[0]:
        _kernel("row_sums", _ROW_SUMS)(
            *_warp_grid(X.shape[0]), (X.indptr, X.data, np.int64(X.shape[0]), out)
        )
    return out


_SCALE_ROWS = r"""
extern "C" __global__ void scale_rows(const int* indptr, float* data, const float* scale,
                                      long long n_rows) {
    const int lane = threadIdx.x & 31;
    const long long n_warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long r = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5; r < n_rows;
         r += n_warps)
        for (int j = indptr[r] + lane; j < indptr[r + 1]; j += 32) data[j] *= scale[r];
}
"""


def scale_rows(X, scale) -> None:
    """Multiply each row of a CuPy CSR matrix by its factor in ``scale``, in place."""
    import cupy as cp

    scale = cp.asarray(scale, dtype=cp.float32)
    if not _plain(X):
        X.data *= cp.repeat(scale, cp.diff(X.indptr).get().tolist()).astype(X.data.dtype)
        return
    if X.shape[0]:
        _kernel("scale_rows", _SCALE_ROWS)(
            *_warp_grid(X.shape[0]), (X.indptr, X.data, scale, np.int64(X.shape[0]))
        )


def _warp_grid(n_rows: int) -> tuple[tuple[int], tuple[int]]:
    return (max(1, min(65535 * 8, (n_rows + 7) // 8)),), (256,)


def to_dense(X):
    """Return a CuPy CSR matrix as a new dense row-major float32 array.

    One scatter kernel: CuPy's ``toarray`` took 46 ms for 110k x 5000 at 10% density on an H200
    (2026-11-24), a chunk of the 1.3M-cell set. Duplicate entries add up, as in SciPy. Other
    dtypes go through ``toarray``.
    """
    import cupy as cp

    if not _plain(X):
        return cp.asarray(X.toarray(), dtype=cp.float32)
    n_rows, n_cols = X.shape
    out = cp.zeros((n_rows, n_cols), cp.float32)
    if n_rows and X.nnz:
        _kernel("csr_to_dense", _DENSE)(
            *_warp_grid(n_rows),
            (X.indptr, X.indices, X.data, np.int64(n_rows), np.int64(n_cols), out),
        )
    return out


def gpu_partition(conn, algorithm: str, *, resolution: float, random_state: int) -> np.ndarray:
    """Louvain or Leiden with cuGraph (pylibcugraph) on a symmetric graph in CSR form.

    The same cuGraph algorithms and defaults that rapids-singlecell calls (at most 100 levels;
    Louvain: modularity-gain threshold 1e-7; Leiden: theta 1, the seed), on the graph built
    straight from the CSR arrays on the GPU (vertices 0..n-1, no renumbering), instead of through
    cuDF edge lists: the same result, without the host-side edge-list copy and cuDF.
    Returns one label per vertex (cuGraph's community numbers).
    """
    import cupy as cp
    import cupyx.scipy.sparse as csp
    import pylibcugraph as plc
    import rapids_singlecell  # noqa: F401 - loads the RAPIDS stack (and its library paths)

    g = conn if csp.issparse(conn) else csp.csr_matrix(conn.tocsr().astype(np.float32))
    g = g.tocsr()
    n = g.shape[0]
    handle = plc.ResourceHandle()
    graph = plc.SGGraph(
        resource_handle=handle,
        graph_properties=plc.GraphProperties(is_symmetric=True, is_multigraph=False),
        src_or_offset_array=g.indptr.astype(cp.int32),
        dst_or_index_array=g.indices.astype(cp.int32),
        weight_array=g.data.astype(cp.float32),
        store_transposed=False,
        renumber=False,
        do_expensive_check=False,
        input_array_format="CSR",
    )
    if algorithm == "leiden":
        vertices, parts, _ = plc.leiden(handle, random_state, graph, 100, resolution, 1.0, False)
    else:  # cuGraph's Louvain takes no seed
        vertices, parts, _ = plc.louvain(handle, graph, 100, 1e-7, resolution, False)
    labels = cp.full(n, -1, dtype=cp.int64)
    labels[vertices] = parts
    labels = labels.get()
    alone = labels < 0  # vertices cuGraph left out (none expected): one community each
    labels[alone] = labels.max(initial=-1) + 1 + np.arange(int(alone.sum()))
    return labels


def preload_graph_library(*, wait: bool = False) -> None:
    """Start cuGraph in a background thread of this process, once (see the module's docstring).

    cuGraph's start-up (about 1.5 s) otherwise falls on the first clustering; a tiny Louvain and
    Leiden run here instead. ``SCPLAYBOOK_NO_WARMUP=1`` turns it off.

    ``wait``: return when it is done. :func:`scplaybook.start_dask` does so: there this process
    shares its GPU with a Dask worker, whose kernels a cuGraph start-up running alongside
    slowed (measured at 1.3M cells on an H200: regress-out, scaling and PCA 6.1 s against 4.4 s).
    """
    global _preloaded
    if _preloaded or os.environ.get("SCPLAYBOOK_NO_WARMUP"):
        return
    _preloaded = True
    thread = threading.Thread(target=_preload_cugraph, name="scplaybook-cugraph", daemon=True)
    thread.start()
    if wait:
        thread.join()
    else:
        atexit.register(thread.join, 30)  # never tear CUDA down under a running cuGraph call


def _preload_cugraph() -> None:
    try:
        import scipy.sparse as sp

        g = sp.random(60, 60, density=0.2, random_state=0, format="csr", dtype=np.float32)
        g = (g + g.T).tocsr()
        gpu_partition(g, "louvain", resolution=1.0, random_state=0)
        gpu_partition(g, "leiden", resolution=1.0, random_state=0)
    except Exception:  # noqa: BLE001 - a warm-up that fails costs nothing but its time
        pass
