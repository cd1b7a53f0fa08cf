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
    steps = [
        ("to GPU", lambda: scp.get.to_gpu(a)),
        ("QC", lambda: scp.pp.calculate_qc_metrics(a)),
        ("filter cells", lambda: scp.pp.filter_cells(a, min_genes=None, max_genes=5000)),
        ("filter genes", lambda: scp.pp.filter_genes(a, min_cells=3)),
        ("normalize + log1p", lambda: (scp.pp.normalize_total(a), scp.pp.log1p(a))),
        ("HVG", lambda: scp.pp.highly_variable_genes(a, n_top_genes=args.n_top_genes)),
        ("regress out", lambda: scp.pp.regress_out(a)),
        ("scale", lambda: scp.pp.scale(a, max_value=10)),
        ("PCA", lambda: scp.pp.pca(a, n_comps=min(100, args.n_top_genes - 1))),
    ]
    try:
        for name, step in steps:
            profile(name, step)
    finally:
        client.close()
        client.cluster.close()


if __name__ == "__main__":
    main()
