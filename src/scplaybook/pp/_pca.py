"""Principal component analysis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._backend import backend_for_X, is_gpu_array, rsc
from .._errors import ParameterError
from .._timing import note_backend, timed

if TYPE_CHECKING:
    from anndata import AnnData


@timed("PCA")
def pca(adata: AnnData, *, n_comps: int = 50, random_state: int = 0) -> AnnData:
    """Compute ``n_comps`` principal components into ``obsm['X_pca']`` and ``uns['pca']``."""
    limit = min(adata.n_obs, adata.n_vars) - 1
    if n_comps > limit:
        raise ParameterError(
            f"n_pcs={n_comps} is too many for {adata.n_obs} cells x {adata.n_vars} genes: use at most {limit}."
        )
    if note_backend(backend_for_X(adata, "pca")) == "gpu":
        rsc().pp.pca(adata, n_comps=n_comps, random_state=random_state)
        # small results live on the host, where plots and the CPU-side steps read them
        for store, key in ((adata.obsm, "X_pca"), (adata.varm, "PCs")):
            if key in store and is_gpu_array(store[key]):
                store[key] = store[key].get()
        for k, v in adata.uns["pca"].items():
            if is_gpu_array(v):
                adata.uns["pca"][k] = v.get()
    else:
        import scanpy as sc

        sc.pp.pca(adata, n_comps=n_comps, random_state=random_state)
    return adata
