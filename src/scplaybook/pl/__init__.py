"""Plotting: each plot is shown and saved as PNG under ``settings.figdir``."""

from ._plots import (
    batch_mixing,
    doublets,
    embedding,
    highly_variable_genes,
    marker_genes,
    markers,
    paga,
    pca_variance_ratio,
    qc,
    timings,
)

__all__ = [
    "batch_mixing",
    "doublets",
    "embedding",
    "highly_variable_genes",
    "marker_genes",
    "markers",
    "paga",
    "pca_variance_ratio",
    "qc",
    "timings",
]
