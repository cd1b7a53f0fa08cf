"""The session: which backend runs, and the Dask cluster the chunked steps use.

The top of the package's layers (beside the runner): it starts the background work that the lower
layers only provide (kernel warm-up, cuGraph start-up, Dask workers).
"""

from __future__ import annotations

from typing import Literal

from ._backend import _gpu_probe, resolve_backend
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


def start_dask(n_workers: int | None = 0, *, scheduler: str | None = None, protocol: str = "tcp"):
    """Start a local Dask cluster, or join one that runs, as the default client of the chunked steps.

    On the GPU backend a dask-cuda ``LocalCUDACluster`` with one worker per GPU (``n_workers``
    GPUs, ``None`` for all); on the CPU a ``LocalCluster`` of ``n_workers`` single-threaded
    processes. ``0`` starts nothing. Start it before :func:`scplaybook.read`: a ``.h5ad`` is then
    read in row chunks, which the workers read, filter, normalise, select genes on, regress out,
    scale and put through PCA; the later steps run on one GPU. The cluster stops with the process
    (or with ``client.close(); client.cluster.close()``).

    ``protocol="ucx"`` (dask-cuda with UCXX) moves GPU data between the processes over NVLink
    and CUDA IPC instead of through host memory and TCP.

    With ``scheduler`` it starts nothing and connects to a cluster that already runs (a scheduler
    on an HPC allocation, ``dask scheduler`` plus ``dask cuda worker`` by hand, dask-jobqueue);
    the chunked steps use it as they use a local one. Its workers read their own row chunks of the
    input file, so the file's path must be the same on every worker.

    Parameters
    ----------
    n_workers
        Workers: GPUs to use on the GPU backend (``None``: all), processes on the CPU; ``0``
        starts nothing. Not used with ``scheduler``.
    scheduler
        Address of a running scheduler (``"tcp://10.0.0.5:8786"``) or the path of its scheduler
        file (``dask scheduler --scheduler-file``).
    protocol
        ``"tcp"`` or ``"ucx"`` (GPU workers only).

    Returns
    -------
    The ``distributed.Client``, or ``None`` for ``n_workers=0`` without ``scheduler``.
    """
    if scheduler:
        return _connect(scheduler)
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
    client = Client(cluster, direct_to_workers=_direct_to_workers())
    atexit.register(cluster.close)
    atexit.register(client.close)
    if what.startswith("dask-cuda"):
        from ._gpu import preload_graph_library

        client.run(_ready_gpu_worker)  # as this process is ready before its first step
        preload_graph_library(wait=True)  # not alongside the workers' first steps
    logger.info(f"Dask cluster: {len(cluster.workers)} workers ({what})")
    return client


def _connect(scheduler: str):
    """Join a running Dask cluster by address or scheduler file; check its workers fit the backend."""
    from pathlib import Path

    from distributed import Client

    from ._errors import ParameterError
    from ._settings import logger

    by_file = not scheduler.startswith(("tcp://", "tls://", "ucx://", "inproc://"))
    if by_file and not Path(scheduler).is_file():
        raise ParameterError(
            f"dask_scheduler={scheduler!r} is neither a scheduler address (tcp://HOST:8786) nor "
            "an existing scheduler file (dask scheduler --scheduler-file FILE)."
        )
    kw = {"scheduler_file": scheduler} if by_file else {"address": scheduler}
    try:
        client = Client(timeout="30s", direct_to_workers=_direct_to_workers(), **kw)
    except (OSError, TimeoutError) as e:
        raise ParameterError(
            f"cannot reach the Dask scheduler {scheduler!r} ({e}). Is it running, and is its "
            "address reachable from here?"
        ) from e
    try:
        client.wait_for_workers(1, timeout=60)  # workers may still be starting
    except TimeoutError:
        client.close()
        raise ParameterError(
            f"the Dask scheduler {scheduler!r} has had no worker for 60 s: start them "
            "(dask worker / dask cuda worker --scheduler-file ...)."
        ) from None
    workers = client.scheduler_info()["workers"]
    gpu = resolve_backend() == "gpu"
    if gpu:  # the same probe as this process's backend choice, on each worker
        missing = {w: why for w, (ok, why) in client.run(_gpu_probe).items() if not ok}
        if missing:
            client.close()
            raise ParameterError(
                "the GPU backend needs GPU workers (dask cuda worker), but "
                + "; ".join(f"{w} cannot use one ({why})" for w, why in missing.items())
                + ". Start the workers with dask-cuda in the playbook's environment, or use "
                "backend='cpu'."
            )
        client.run(_ready_gpu_worker)
        from ._gpu import preload_graph_library

        preload_graph_library(wait=True)  # as for a local cluster (start_dask)
    logger.info(f"Dask cluster at {client.scheduler.address}: {len(workers)} workers (joined)")
    return client


def _direct_to_workers() -> bool:
    """Whether results come straight from the workers (default), or through the scheduler.

    Through the scheduler (Dask's default) every result crosses two connections and the
    scheduler's event loop: the 1.3M-cell PCA scores (490 MB) came at about 1 GB/s. A cluster
    whose workers this process cannot reach sets ``distributed.client.direct-to-workers: false``
    in Dask's configuration, which is honoured.
    """
    import dask

    setting = dask.config.get("distributed.client.direct-to-workers", None)
    return True if setting is None else bool(setting)


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
