"""Where the notebook process's time goes in each preprocessing step on a Dask cluster (cProfile).

The task stream (``bench.py --task-stream``) says how long the workers computed; what a step spends
beyond that happens here, in this process, and does not divide over more workers. This prints, per
step, its wall time and the functions of this process that took it (cumulative, then own time).

    python benchmarks/profile_dask_steps.py DATA.h5ad --workers 1 [--n-top-genes 5000]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import scplaybook as scp
from scplaybook._recipe import ORIGINAL, STEP_NAMES
from scplaybook._recipe import run as run_recipe

#: The functions worth seeing in the cumulative listing (ours, AnnData's, rapids-singlecell's and
#: Dask's entry points), as a regular expression on pstats' file:line(function) column.
SHOWN = r"scplaybook|anndata|rapids_singlecell|scanpy/preprocessing|dask/base|client.py:\d+\((gather|compute|persist|wait)"


def profile(name: str, step) -> None:
    """Run ``step()`` under cProfile and print its wall time and top functions."""
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    step()
    pr.disable()
    out = io.StringIO()
    stats = pstats.Stats(pr, stream=out)
    stats.sort_stats("cumulative").print_stats(SHOWN, 12)
    stats.sort_stats("tottime").print_stats(6)
    skip = ("Ordered by", "List reduced", "function calls", "ncalls")
    rows = [r for r in out.getvalue().splitlines() if "(" in r and not any(k in r for k in skip)]
    print(f"===== {name}: {time.perf_counter() - t0:.2f} s")
    print("\n".join(r[:170] for r in rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a .h5ad of raw counts")
    p.add_argument("--workers", type=int, default=1, help="Dask workers (one per GPU on GPUs)")
    p.add_argument("--n-top-genes", type=int, default=5000)
    args = p.parse_args()
    scp.set_backend("gpu" if scp.gpu_available() else "cpu")
    client = scp.start_dask(args.workers)
    a = scp.read(args.data, check_counts=False)
    # the recipe's preprocessing with the original notebook's parameters
    params = {
        **ORIGINAL,
        "n_top_genes": args.n_top_genes,
        "n_comps": min(100, args.n_top_genes - 1),
    }
    try:
        profile("to GPU", lambda: scp.get.to_gpu(a))
        for name in STEP_NAMES[: STEP_NAMES.index("PCA") + 1]:
            profile(name, lambda name=name: run_recipe(a, params, only=[name]))
    finally:
        client.close()
        client.cluster.close()


if __name__ == "__main__":
    main()
