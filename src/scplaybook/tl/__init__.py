"""Tools: clustering, embeddings, batch mixing, differential expression and trajectories."""

from ._annotate import annotate, marker_table
from ._cluster import leiden, louvain
from ._de import rank_genes_groups
from ._embed import tsne, umap
from ._metrics import batch_mixing
from ._trajectory import diffmap, dpt, paga

__all__ = [
    "annotate",
    "batch_mixing",
    "diffmap",
    "dpt",
    "leiden",
    "louvain",
    "marker_table",
    "paga",
    "rank_genes_groups",
    "tsne",
    "umap",
]
