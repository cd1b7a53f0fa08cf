"""Moving data between host and GPU, in one piece or in row chunks (Dask)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._backend import gpu_name, is_gpu_array, resolve_backend, x_on_gpu
from .._chunks import distributed_client, is_dask, rows_to_dask, source_of
from .._errors import GPUMemoryError
from .._settings import logger
from .._timing import note_backend, timed

if TYPE_CHECKING:
    from anndata import AnnData

_GIB = 1024**3
#: Non-zeros per row chunk of the chunked path (each chunk is one int32-indexed CuPy CSR matrix).
CHUNK_NNZ = 2**28


def free_gpu_bytes() -> int:
    """Memory new allocations can get on the current CUDA device, in bytes (free + unused pool).

    Returns
    -------
    Bytes; 0 without a usable GPU.
    """
    from .._gpu import free_bytes

    return free_bytes()


def _x_bytes(adata: AnnData, index_bytes: int | None = None) -> int:
    X = adata.X
    if is_dask(X):
        src = source_of(X)
        nnz = src.nnz if src is not None and src.nnz >= 0 else X.shape[0] * X.shape[1]
        return nnz * (4 + (index_bytes or 4)) + 8 * X.shape[0]
    if hasattr(X, "nnz"):
        idx = index_bytes or (8 if X.nnz >= 2**31 - 1 else 4)
        return X.nnz * (X.dtype.itemsize + idx) + (X.shape[0] + 1) * idx
    return X.size * X.dtype.itemsize


def gpu_bytes_needed(adata: AnnData, *, n_top_genes: int = 2000, chunked: bool = False) -> int:
    """Estimate the GPU memory the playbook's preprocessing needs for ``adata``, in bytes.

    In one piece the peak holds the count matrix about twice (the matrix and its filtered or
    normalised successor) plus the dense scaled matrix of the highly variable genes twice. CSR
    indices are 64-bit past 2^31 - 1 non-zeros. In row chunks (``chunked``) every chunk keeps
    32-bit indices; the steps still hold two generations of the matrix at their peak.
    """
    x_bytes = _x_bytes(adata, 4 if chunked else None)
    dense_hvg = adata.n_obs * min(n_top_genes, adata.n_vars) * 4
    return 2 * x_bytes + 2 * dense_hvg


@timed("to GPU")
def to_gpu(adata: AnnData, *, n_top_genes: int = 2000, chunked: bool | None = None) -> AnnData:
    """Move ``X`` to the GPU when the session backend is the GPU (a no-op on CPU), in place.

    Parameters
    ----------
    adata
        Counts on the host, in one matrix or lazily in row chunks (see :func:`scplaybook.read`).
    n_top_genes
        The number of highly variable genes the analysis will keep (for the memory estimate).
    chunked
        ``None`` chooses: one CuPy matrix when it fits, else row chunks held as a Dask array of
        CuPy matrices (the memory-aware path: 32-bit indices, steps run chunk by chunk, the data
        are gathered into one matrix once reduced to the highly variable genes). ``True`` or
        ``False`` forces one or the other.

    Returns
    -------
    ``adata``, changed in place.

    Raises
    ------
    GPUMemoryError
        Before moving anything, when the analysis of this matrix would not fit in the free GPU
        memory (see :func:`gpu_bytes_needed`); the message says what to change.
    """
    if resolve_backend() != "gpu" or x_on_gpu(adata):
        return adata
    from .._chunks import read_rows
    from .._gpu import csr_to_gpu, preload_graph_library, to_device, use_memory_pool

    free = free_gpu_bytes()
    X = adata.X
    src = source_of(X)  # X left on disk by scplaybook.read
    nnz = src.nnz if src is not None else getattr(X, "nnz", 0)
    too_big = nnz >= 2**31 - 1  # CuPy CSR matrices index with int32
    need_one = gpu_bytes_needed(adata, n_top_genes=n_top_genes)
    if chunked is None:
        asked = is_dask(X) and (src is None or src.chunked)
        chunked = asked or too_big or need_one > free
    if not chunked and too_big:
        raise GPUMemoryError(
            f"X has {nnz} non-zeros: one CuPy matrix holds fewer than 2^31. Nothing was moved. "
            "Use chunked=None or True (row chunks)."
        )
    need = gpu_bytes_needed(adata, n_top_genes=n_top_genes, chunked=chunked)
    client = distributed_client() if chunked else None
    where = gpu_name()
    if client is not None:  # the chunks spread over the workers' GPUs
        per_worker = client.run(free_gpu_bytes)
        free, where = sum(per_worker.values()), f"the {len(per_worker)} Dask workers' GPUs"
    if need > free:
        raise GPUMemoryError(
            f"{adata.n_obs} cells x {adata.n_vars} genes need about {need / _GIB:.1f} GiB of GPU memory "
            f"for this analysis{' even in row chunks' if chunked else ''}; {free / _GIB:.1f} GiB are free "
            f"on {where}. Nothing was moved. Analyse fewer cells (subsample, or split by sample), "
            "use a GPU with more memory or several GPUs (Dask, see the README), or run with backend='cpu'."
        )
    note_backend("gpu")
    if chunked:
        import dask

        # no RMM pool here: a pool that has served the chunks cannot hand out the one large
        # block of the gathered matrix (seen at 1.3M cells); CuPy's own pool is emptied instead
        if distributed_client() is None:
            dask.config.set(scheduler="synchronous")  # one GPU: one chunk at a time bounds memory
        if client is not None:  # each worker reads its own run of chunks
            adata.X = rows_to_dask(X, CHUNK_NNZ, to_block=csr_to_gpu, spread=True)
        else:
            adata.X = rows_to_dask(X, CHUNK_NNZ, to_block=csr_to_gpu).persist()
        logger.info(
            f"    memory-aware path: X is held as {adata.X.numblocks[0]} row chunks on the GPU "
            f"(about {need / _GIB:.1f} GiB needed; {need_one / _GIB:.1f} GiB in one piece, "
            f"{free / _GIB:.1f} GiB free)"
        )
    else:
        use_memory_pool(need_one)  # reserve what the analysis will use
        if src is not None:  # from the file straight into GPU memory
            adata.X = read_rows(src.path, 0, *src.shape, gpu=True, check=src.check)
        elif is_dask(X):
            from .._chunks import gather

            adata.X = csr_to_gpu(gather(X).tocsr())
        elif hasattr(X, "nnz"):
            adata.X = csr_to_gpu(X.tocsr())
        else:
            adata.X = to_device(X)
    preload_graph_library()
    return adata


@timed("gather X")
def gather_x(adata: AnnData) -> AnnData:
    """Bring ``X`` held in row chunks on Dask workers into this process as one matrix, in place.

    Nothing to do when ``X`` is one matrix already. Differential expression and :func:`to_cpu`
    (so also writing ``.h5ad``) call it; on the GPU backend the matrix arrives on this process's GPU.

    Returns
    -------
    ``adata``, changed in place.
    """
    if not is_dask(adata.X):
        return adata
    from .._chunks import gather

    logger.info(
        f"    X ({adata.n_obs} x {adata.n_vars}, {adata.X.numblocks[0]} row chunks) comes from "
        "the Dask workers into this process"
    )
    adata.X = gather(adata.X)
    return adata


@timed("to CPU")
def to_cpu(adata: AnnData, *, copy: bool = False) -> AnnData:
    """Move ``X``, ``raw``, layers and embeddings back to host memory; a copy when ``copy``.

    Parameters
    ----------
    adata
        Data with arrays on the GPU (or in row chunks on Dask workers).
    copy
        Return a host copy and leave ``adata`` as it is.

    Returns
    -------
    ``adata`` (changed in place), or its host copy.
    """
    if copy:
        adata = adata.copy()
    gather_x(adata)
    stores = (adata.layers, adata.obsm, adata.varm, adata.obsp)
    on_gpu = [(s, k) for s in stores for k in list(s.keys()) if is_gpu_array(s[k])]
    x_gpu, raw_gpu = is_gpu_array(adata.X), adata.raw is not None and is_gpu_array(adata.raw.X)
    if not (x_gpu or raw_gpu or on_gpu):
        return adata
    from .._gpu import array_to_host

    note_backend("gpu")
    if x_gpu:
        adata.X = array_to_host(adata.X)
    for store, k in on_gpu:
        if is_gpu_array(store[k]):  # setting one entry can replace another (seen on the GPU)
            store[k] = array_to_host(store[k])
    if raw_gpu:
        from anndata import AnnData as _AnnData

        raw = adata.raw
        adata.raw = _AnnData(X=array_to_host(raw.X), obs=adata.obs[[]], var=raw.var)
    return adata
