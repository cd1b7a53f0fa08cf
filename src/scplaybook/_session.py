"""The session: which backend runs, and the Dask cluster the chunked steps use.

The top of the package's layers (beside the runner): it starts the background work that the lower
layers only provide (kernel warm-up, cuGraph start-up, Dask workers).
"""

from __future__ import annotations

from typing import Literal

from ._backend import resolve_backend
from ._settings import settings


def set_backend(backend: str) -> Literal["gpu", "cpu"]:
    """Set the session backend and return the one that will run.

    On the GPU, the first time on a machine (an empty kernel cache), this also starts compiling
    the later steps' kernels in the background (see :mod:`scplaybook._warmup`). The RMM memory
    pool is set up by :func:`scplaybook.get.to_gpu`, which knows whether the data fit in one piece.

    Returns
    -------
    ``"gpu"`` or ``"cpu"``: the backend that will run (``"auto"`` resolved).
    """
    resolved = resolve_backend(backend)
    settings.backend = backend  # type: ignore[assignment]
    if resolved == "gpu":
        from . import _warmup

        _warmup.start()
    return resolved


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

    Parameters
    ----------
    n_workers
        Workers: GPUs to use on the GPU backend (``None``: all), processes on the CPU; ``0``
        starts nothing.
    protocol
        ``"tcp"`` or ``"ucx"`` (GPU workers only).

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
        from ._gpu import preload_graph_library

        client.run(_ready_gpu_worker)  # as this process is ready before its first step
        preload_graph_library(wait=True)  # not alongside the workers' first steps
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
