"""Preprocessing: the same calls on GPU and CPU."""

from ._doublets import filter_doublets, scrublet
from ._harmony import harmony_integrate
from ._neighbors import neighbors
from ._normalize import highly_variable_genes, log1p, normalize_total, regress_out, scale
from ._pca import pca
from ._qc import calculate_qc_metrics, detect_mito_prefix, filter_cells, filter_genes

__all__ = [
    "calculate_qc_metrics",
    "detect_mito_prefix",
    "filter_cells",
    "filter_doublets",
    "filter_genes",
    "harmony_integrate",
    "highly_variable_genes",
    "log1p",
    "neighbors",
    "normalize_total",
    "pca",
    "regress_out",
    "scale",
    "scrublet",
]
