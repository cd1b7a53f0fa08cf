"""GPU plumbing: the memory pool, fast host/GPU copies and CSR subsetting without copies of the whole.

Only called on the GPU path; CuPy is imported inside the functions.
"""

from __future__ import annotations

import numpy as np

from ._settings import logger

#: Bytes per pinned staging buffer for host <-> GPU copies.
STAGE_BYTES = 1 << 27
_pool_on = False


def use_memory_pool() -> bool:
    """Serve CuPy's allocations from an RMM pool (as the original notebook does), once per process.

    Returns whether the pool is in use. Without RMM, CuPy's own pool stays (a debug-level note).
    """
    global _pool_on
    if _pool_on:
        return True
    try:
        import cupy as cp
        import rmm
        from rmm.allocators.cupy import rmm_cupy_allocator
    except ImportError:
        logger.debug("RMM is not installed: CuPy's own memory pool is used")
        return False
    rmm.reinitialize(pool_allocator=True, managed_memory=False)
    cp.cuda.set_allocator(rmm_cupy_allocator)
    _pool_on = True
    return True


def _staged(n_bytes: int, copy_chunk) -> None:
    """Copy ``n_bytes`` in pieces through two pinned buffers, so host copies overlap the DMA."""
    import cupy as cp
    import cupyx

    step = min(STAGE_BYTES, n_bytes)
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

    if "source_rows" not in _kernels:
        _kernels["source_rows"] = cp.RawKernel(_SOURCE_ROWS, "source_rows")
    kernel = _kernels["source_rows"]
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
            (min(65535, (n + 255) // 256),),
            (256,),
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


def take_cols(X, cols):
    """Columns ``cols`` (sorted integer positions) of a CuPy CSR matrix, as a new CSR matrix."""
    import cupy as cp
    import cupyx.scipy.sparse as csp

    new_col = cp.full(X.shape[1], -1, cp.int32)
    new_col[cp.asarray(cols)] = cp.arange(len(cols), dtype=cp.int32)
    mapped = new_col[X.indices]
    keep = mapped >= 0
    before = cp.zeros(X.nnz + 1, cp.int64)
    cp.cumsum(keep, out=before[1:])
    new_indptr = before[X.indptr].astype(X.indptr.dtype)
    del before
    return csp.csr_matrix(
        (X.data[keep], mapped[keep], new_indptr), shape=(X.shape[0], len(cols)), copy=False
    )
