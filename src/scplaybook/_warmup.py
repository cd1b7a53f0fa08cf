"""Compile the GPU kernels of the later steps ahead of time, the first time on a machine.

With an empty kernel cache, every GPU step compiles its CuPy kernels on first use: about 45 s in
all at 200k cells, one kernel after the other. When a session starts on the GPU with a cache that
has not been warmed yet, :func:`start` launches a few background processes that run the later steps
(Harmony, differential expression, diffusion map) on tiny synthetic data. They compile the same
kernels into the same cache (``CUPY_CACHE_DIR``) in parallel while the main process loads and
preprocesses, and leave a marker in the cache when done, so that later sessions start none.

Set ``SCPLAYBOOK_NO_WARMUP=1`` to turn this off (and :func:`scplaybook._gpu.preload_graph_library`,
which starts cuGraph in a thread once the data are on the GPU).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

PARTS = ("harmony", "de", "graph")
_started = False


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


def _run(part: str) -> None:
    import pandas as pd

    from . import datasets, get, tl
    from ._recipe import STEP_NAMES, run
    from ._settings import settings

    settings.backend = "gpu"
    rng = np.random.default_rng(0)
    if part == "de":  # the recipe's preprocessing and DE, on a small dataset
        a = datasets.synthetic_pbmc(2000, 2100, device="gpu", progress=False)
        get.to_gpu(a)
        pre = STEP_NAMES[: STEP_NAMES.index("PCA") + 1]
        run(a, {"min_genes": None, "n_top_genes": 500, "n_comps": 20}, only=pre)
        run(a, only=["logreg DE", "Wilcoxon DE"])
    else:
        import anndata as ad

        n = 3000
        a = ad.AnnData(np.zeros((n, 1), np.float32))
        a.obsm["X_pca"] = rng.normal(size=(n, 50)).astype(np.float32)
        a.obs["assay"] = pd.Categorical(rng.choice(["a", "b", "c"], n))
        if part == "harmony":
            run(a, only=["Harmony"])
        else:  # the kNN, UMAP and diffusion-map kernels (cuGraph's clustering is precompiled)
            run(a, only=["kNN + UMAP"])
            tl.diffmap(a)
    _marker(part).touch()


if __name__ == "__main__":
    _run(sys.argv[1])
