"""Harmony batch correction."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._dispatch import dispatch, results_to_host
from .._errors import ParameterError
from .._settings import logger
from .._timing import timed

if TYPE_CHECKING:
    from anndata import AnnData


def _harmonypy_corrected(z: np.ndarray, n_obs: int, n_pcs: int) -> np.ndarray:
    """Return harmonypy's ``Z_corr`` as cells x PCs, whichever way the installed version gives it.

    harmonypy < 0.1 returns PCs x cells, >= 0.1 cells x PCs; scanpy 1.12's
    ``external.pp.harmony_integrate`` always transposes and so breaks on the newer one.
    """
    z = np.asarray(z)
    if z.shape == (n_obs, n_pcs):
        return z
    if z.shape == (n_pcs, n_obs):
        return z.T
    raise RuntimeError(
        f"harmonypy returned Z_corr of shape {z.shape}; expected ({n_obs}, {n_pcs})."
    )


@timed("harmony")
def harmony_integrate(
    adata: AnnData,
    key: str | None,
    *,
    basis: str = "X_pca",
    adjusted_basis: str = "X_pca_harmony",
    max_iter_harmony: int = 10,
    random_state: int = 0,
) -> AnnData:
    """Correct ``obsm[basis]`` for the batches in ``obs[key]`` with Harmony.

    The corrected embedding goes to ``obsm[adjusted_basis]``. With ``key=None`` (data of one batch)
    there is nothing to correct: ``obsm[basis]`` is copied there, so later steps read the same key.

    Parameters
    ----------
    adata
        Data with a PCA embedding.
    key
        Column of ``obs`` with the batches; ``None`` for data of one batch (nothing corrected).
    basis
        Key of ``obsm`` to correct.
    adjusted_basis
        Key of ``obsm`` for the corrected embedding.
    max_iter_harmony
        Harmony's iterations at most.
    random_state
        Seed of Harmony's clustering.

    Returns
    -------
    ``adata`` with ``obsm[adjusted_basis]`` (host NumPy array, float32).
    """
    if key is None:
        logger.info("    no batch key: Harmony skipped, the embedding is used as it is")
        adata.obsm[adjusted_basis] = np.asarray(adata.obsm[basis]).copy()
        return adata
    if key not in adata.obs:
        raise ParameterError(
            f"batch key {key!r} is not a column of obs; the columns are: {', '.join(map(str, adata.obs.columns))}."
        )
    if adata.obs[key].nunique() < 2:
        raise ParameterError(
            f"batch key {key!r} has a single value: there is no batch effect to correct."
        )
    backend = dispatch(adata, "harmony_integrate")
    if backend.gpu:
        import cupy as cp

        backend.sc.pp.harmony_integrate(
            adata, key, basis=basis, adjusted_basis=adjusted_basis, dtype=cp.float32,
            max_iter_harmony=max_iter_harmony, random_state=random_state,
        )  # fmt: skip
        results_to_host(adata, obsm=[adjusted_basis])
    else:  # harmonypy itself: scanpy's wrapper transposes harmonypy >= 0.1's Z_corr
        import harmonypy

        x = np.asarray(adata.obsm[basis], dtype=np.float64)
        ho = harmonypy.run_harmony(
            x,
            adata.obs,
            [key],
            max_iter_harmony=max_iter_harmony,
            random_state=random_state,
            verbose=False,
        )
        adata.obsm[adjusted_basis] = _harmonypy_corrected(ho.Z_corr, *x.shape).astype(np.float32)
    return adata
