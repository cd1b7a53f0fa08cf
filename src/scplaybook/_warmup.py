"""Compile the GPU kernels of the later steps ahead of time, the first time on a machine.

With an empty kernel cache, every GPU step compiles its CuPy kernels on first use: about 45 s in
all at 200k cells, one kernel after the other. When a session starts on the GPU with a cache that
has not been warmed yet, :func:`start` launches a few background processes that run the later steps
(Harmony, differential expression, diffusion map) on tiny synthetic data. They compile the same
kernels into the same cache (``CUPY_CACHE_DIR``) in parallel while the main process loads and
preprocesses, and leave a marker in the cache when done, so that later sessions start none.

:func:`preload_graph_library` (called once the data are on the GPU) runs a tiny Louvain and Leiden
in a thread of this process: cuGraph's start-up otherwise falls on the first clustering. Set
``SCPLAYBOOK_NO_WARMUP=1`` to turn all of this off.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

PARTS = ("harmony", "de", "graph")
_started = _preloaded = False


def cache_dir() -> Path:
    """Return the CuPy kernel cache folder in use."""
    return Path(os.environ.get("CUPY_CACHE_DIR") or Path.home() / ".cupy" / "kernel_cache")


def _marker(part: str) -> Path:
    return cache_dir() / f".scplaybook-warm-{part}"


def start() -> list[subprocess.Popen]:
    """Start the background compilation once per process, unless the cache is warm already."""
    global _started
    if _started or os.environ.get("SCPLAYBOOK_NO_WARMUP"):
        return []
    _started = True
    procs = []
    for part in PARTS:
        if _marker(part).exists():
            continue
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "scplaybook._warmup", part],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "SCPLAYBOOK_NO_WARMUP": "1"},
            )
        )
    return procs


def preload_graph_library(*, wait: bool = False) -> None:
    """Start cuGraph in a background thread of this process, once (see the module's docstring).

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

        from .tl._cluster import gpu_partition

        g = sp.random(60, 60, density=0.2, random_state=0, format="csr", dtype=np.float32)
        g = (g + g.T).tocsr()
        gpu_partition(g, "louvain", resolution=1.0, random_state=0)
        gpu_partition(g, "leiden", resolution=1.0, random_state=0)
    except Exception:  # noqa: BLE001 - a warm-up that fails costs nothing but its time
        pass


def _run(part: str) -> None:
    import numpy as np
    import pandas as pd

    import scplaybook as scp

    scp.set_backend("gpu")
    rng = np.random.default_rng(0)
    if part == "de":
        a = scp.datasets.synthetic_pbmc(2000, 2100, device="gpu", progress=False)
        scp.get.to_gpu(a)
        scp.pp.calculate_qc_metrics(a)
        scp.pp.filter_cells(a, min_genes=None, max_genes=5000, max_pct_mt=20)
        scp.pp.filter_genes(a, min_cells=3)
        scp.pp.normalize_total(a)
        scp.pp.log1p(a)
        scp.pp.highly_variable_genes(a, n_top_genes=500)
        scp.pp.regress_out(a, keys=["total_counts", "pct_counts_mt"])
        scp.pp.scale(a)
        scp.pp.pca(a, n_comps=20)
        scp.tl.rank_genes_groups(a, "cell_type", method="logreg", use_raw=False)
        scp.tl.rank_genes_groups(a, "cell_type", method="wilcoxon")
    else:
        import anndata as ad

        n = 3000
        a = ad.AnnData(np.zeros((n, 1), np.float32))
        a.obsm["X_pca"] = rng.normal(size=(n, 50)).astype(np.float32)
        a.obs["batch"] = pd.Categorical(rng.choice(["a", "b", "c"], n))
        if part == "harmony":
            scp.pp.harmony_integrate(a, "batch")
        else:
            scp.pp.neighbors(a, n_neighbors=15, n_pcs=40)
            scp.tl.umap(a)
            scp.tl.diffmap(a)
    _marker(part).touch()


if __name__ == "__main__":
    _run(sys.argv[1])
