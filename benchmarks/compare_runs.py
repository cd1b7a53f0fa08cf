"""Compare two runs that ``bench.py`` wrote: Leiden ARI, shared markers, and the PCA subspace.

Usage: ``python benchmarks/compare_runs.py RUN_A.json RUN_B.json`` (the per-run JSON files in a
bench output folder, ``ours-<time>.json``; gzipped ones work too). It also prints both runs'
preprocessing time (load through PCA) and their ratio, e.g. one GPU against two. The PCA check reads the
``.pcs.npy`` loadings saved beside each run and prints the cosines of the principal angles between
the two 40-dimensional subspaces, over the genes both runs kept (1 = the same subspace).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench import _agreement


def _load(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)


def _loadings(path: Path) -> Path:
    stem = path.name.removesuffix(".gz").removesuffix(".json")
    return path.with_name(stem + ".pcs.npy")


def subspace_cosines(a: np.ndarray, genes_a: list, b: np.ndarray, genes_b: list) -> np.ndarray:
    """Cosines of the principal angles between the column spaces of two loading matrices."""
    pos_b = {g: i for i, g in enumerate(genes_b)}
    common = [i for i, g in enumerate(genes_a) if g in pos_b]
    qa, _ = np.linalg.qr(a[common].astype(np.float64))
    qb, _ = np.linalg.qr(b[[pos_b[genes_a[i]] for i in common]].astype(np.float64))
    return np.linalg.svd(qa.T @ qb, compute_uv=False)


def preprocessing_seconds(run: dict) -> float:
    """Seconds of the steps from loading the file through PCA (the steps Dask spreads over GPUs)."""
    steps = list(run["steps"].items())
    names = [k for k, _ in steps]
    return sum(v for _, v in steps[: names.index("PCA") + 1])


def main() -> None:
    pa, pb = (Path(p) for p in sys.argv[1:3])
    a, b = _load(pa), _load(pb)
    print(_agreement(a, b, (pa.name, pb.name)), end="")
    ta, tb = preprocessing_seconds(a), preprocessing_seconds(b)
    print(
        f"Preprocessing (load through PCA): {ta:.2f} s and {tb:.2f} s; first/second {ta / tb:.2f}x"
    )
    la, lb = _loadings(pa), _loadings(pb)
    if la.exists() and lb.exists():
        cos = subspace_cosines(np.load(la), a["var_names"], np.load(lb), b["var_names"])
        shared = len(set(a["var_names"]) & set(b["var_names"]))
        print(
            f"PCA subspace (first {cos.size} PCs, {shared} shared genes): cosines of the principal "
            f"angles min {cos.min():.4f}, mean {cos.mean():.4f}"
        )


if __name__ == "__main__":
    main()
