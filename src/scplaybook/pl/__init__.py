"""Plotting: each plot is shown and saved as PNG under ``settings.figdir``."""

from ._plots import batch_mixing, embedding, markers, paga, pca_variance_ratio, qc, timings

__all__ = ["batch_mixing", "embedding", "markers", "paga", "pca_variance_ratio", "qc", "timings"]
