"""Time the CPU's kNN graph: exact search (the playbook's up to EXACT_KNN_MAX) against pynndescent.

Each search runs ``scp.pp.neighbors`` once in a new Python process, as a notebook's kernel meets it:
umap-learn's import and numba's compiles included (pynndescent compiles its search in every process).
The points are blobs in 40 dimensions, 15 neighbours each.

Usage::

    python benchmarks/knn_cpu.py [--cells 20000 60000]

Prints a table: seconds per search and size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

ONE = """
import sys
import numpy as np, anndata as ad
import scplaybook as scp
from scplaybook.pp import _neighbors
if sys.argv[1] == "pynndescent":
    _neighbors.EXACT_KNN_MAX = 0
n = int(sys.argv[2])
rng = np.random.default_rng(0)
centres = rng.normal(scale=10, size=(12, 40))
a = ad.AnnData(np.zeros((n, 1), np.float32))
a.obsm["X_pca"] = (centres[rng.integers(0, 12, n)] + rng.normal(size=(n, 40))).astype(np.float32)
scp.set_backend("cpu")
scp.pp.neighbors(a, n_neighbors=15, n_pcs=40)
"""


def main() -> None:
    """Run each search at each size in its own process and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, nargs="+", default=[20000, 60000])
    args = p.parse_args()
    print("| cells | exact, s | pynndescent, s |\n| --- | --- | --- |")
    for n in args.cells:
        row = []
        for search in ("exact", "pynndescent"):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", ONE, search, str(n)], check=True)
            row.append(f"{time.perf_counter() - t:.1f}")
        print(f"| {n:,} | {row[0]} | {row[1]} |", flush=True)


if __name__ == "__main__":
    main()
