"""Datasets: the synthetic demo with ground truth, and the registry of real datasets."""

from ._fetch import default_cache, fetch, registry
from ._synthetic import (
    CELL_TYPES,
    TRAJECTORY,
    demo_file_name,
    synthetic_pbmc,
    write_demo,
    write_synthetic_h5ad,
)

__all__ = [
    "CELL_TYPES",
    "TRAJECTORY",
    "default_cache",
    "demo_path",
    "fetch",
    "registry",
    "synthetic_pbmc",
    "write_demo",
    "write_synthetic_h5ad",
]


def demo_path(*, n_cells: int = 6000, n_genes: int = 10000, seed: int = 0):
    """Path of the demo dataset in the cache, generated on first use (deterministic).

    Parameters
    ----------
    n_cells, n_genes
        Size of the dataset.
    seed
        Seed of the generator.

    Returns
    -------
    The ``.h5ad`` file's path.
    """
    path = default_cache() / demo_file_name(n_cells, n_genes, seed)
    if not path.exists():
        write_demo(path, n_cells=n_cells, n_genes=n_genes, seed=seed)
    return path
