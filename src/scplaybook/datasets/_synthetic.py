"""A deterministic synthetic PBMC-like dataset with known ground truth.

Counts are drawn from a negative binomial (gamma-Poisson) around per-type expression profiles,
cell by cell in chunks, so no dense matrix of the whole dataset is ever held. With CuPy present
(``device="gpu"``) the chunks are drawn on the GPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from .._errors import ParameterError
from .._settings import logger

if TYPE_CHECKING:
    from pathlib import Path

#: Cell types: share of cells and planted markers (real human symbols, unique to the type).
CELL_TYPES: dict[str, tuple[float, list[str]]] = {
    "CD4 T": (0.22, ["CD3E", "CD4", "IL7R", "CCR7", "LEF1", "TCF7", "MAL"]),
    "CD8 T": (0.12, ["CD8A", "CD8B", "GZMK", "CD3G", "LAG3", "CRTAM", "CD160"]),
    "NK": (0.08, ["NKG7", "GNLY", "KLRD1", "KLRF1", "PRF1", "GZMB", "NCAM1"]),
    "B": (0.12, ["MS4A1", "CD79A", "CD79B", "CD19", "BANK1", "PAX5", "FCRL5"]),
    "Plasma": (0.03, ["JCHAIN", "MZB1", "IGHG1", "XBP1", "SDC1", "TNFRSF17", "PRDM1"]),
    "CD14 Monocyte": (0.14, ["CD14", "LYZ", "S100A8", "S100A9", "VCAN", "FCN1", "SELL"]),
    "FCGR3A Monocyte": (0.08, ["FCGR3A", "MS4A7", "CDKN1C", "LST1", "RHOC", "IFITM2", "CX3CR1"]),
    "Dendritic": (0.05, ["FCER1A", "CLEC10A", "CD1C", "HLA-DQA1", "CLEC9A", "IRF8", "FLT3"]),
    "Platelet": (0.04, ["PPBP", "PF4", "GP9", "ITGA2B", "TUBB1", "GNG11", "SPARC"]),
    "Macrophage": (0.12, ["CD68", "APOE", "C1QA", "C1QB", "C1QC", "MRC1", "CD163"]),
}
#: The differentiation trajectory: cells move from the first type's profile to the second's.
TRAJECTORY = ("CD14 Monocyte", "Macrophage")
MT_GENES = [
    "MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3",
    "MT-ND3", "MT-ND4L", "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB",
]  # fmt: skip
RIBO_GENES = [
    f"RPS{i}" for i in (2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 18, 19, 20, 23)
] + [f"RPL{i}" for i in (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 18, 19, 21, 23, 24, 26, 27, 30)]
HOUSEKEEPING = [
    "ACTB",
    "GAPDH",
    "B2M",
    "MALAT1",
    "TMSB4X",
    "EEF1A1",
    "FTL",
    "FTH1",
    "TPT1",
    "HLA-B",
]
ASSAYS = {"10x 3' v2": (0.40, 0.8), "10x 3' v3": (0.35, 1.4), "10x 5' v1": (0.25, 1.0)}
VERSION = 2
"""Generator version (2: planted heterotypic doublets); part of the demo file's name."""


def _xp(device: str):
    if device == "gpu":
        import cupy

        return cupy
    return np


def named_genes() -> list[str]:
    """Symbols of the genes with a role: MT, ribosomal, housekeeping and planted markers."""
    named = MT_GENES + RIBO_GENES + HOUSEKEEPING
    for _, markers in CELL_TYPES.values():
        named = named + markers
    return named


def _gene_table(n_genes: int) -> pd.DataFrame:
    named = named_genes()
    n_bg = n_genes - len(named)
    if n_bg < 100:
        raise ParameterError(f"n_genes={n_genes} is too small: use at least {len(named) + 100}.")
    symbols = named + [f"SYNG{i:05d}" for i in range(n_bg)]
    ids = [f"ENSSYN{i:011d}" for i in range(n_genes)]
    return pd.DataFrame(
        {"feature_name": symbols, "gene_ids": ids, "feature_types": "Gene Expression"},
        index=pd.Index(ids, name="gene_ids"),
    )


def synthetic_pbmc(
    n_cells: int = 6000,
    n_genes: int = 10000,
    *,
    seed: int = 0,
    frac_low_quality: float = 0.05,
    frac_outliers: float = 0.005,
    frac_doublets: float = 0.04,
    batch_strength: float = 0.25,
    device: Literal["cpu", "gpu"] = "cpu",
    chunk_size: int | None = None,
    progress: bool = True,
) -> ad.AnnData:
    """Generate raw UMI counts of a PBMC-like experiment with ground truth.

    Parameters
    ----------
    n_cells
        Number of cells.
    n_genes
        Number of genes (named markers, 13 ``MT-`` genes, ribosomal genes and background genes).
    seed
        Random seed: the same seed gives the same counts.
    frac_low_quality
        Share of low-quality cells (high mitochondrial fraction, few genes).
    frac_outliers
        Share of outlier cells with extreme gene counts.
    frac_doublets
        Share of heterotypic doublets: two cells of different types in one droplet (the mean of
        their profiles, 1.8x the counts), as a 10x run of a few thousand cells has.
    batch_strength
        Standard deviation of the per-assay, per-gene log fold change.
    device
        ``"gpu"`` draws the chunks with CuPy.
    chunk_size
        Cells per chunk (default: about 2·10⁸ matrix entries per chunk on GPU, 2·10⁷ on CPU).
    progress
        Show a progress bar over the chunks.

    Returns
    -------
    AnnData with integer-valued float32 counts in CSR ``X``; ground truth in ``obs``
    (``cell_type``, ``assay``, ``true_pseudotime``, ``is_low_quality``, ``qc_class``,
    ``is_doublet`` with the partner's type in ``doublet_partner``) and the
    planted markers per type in ``uns['planted_markers']``; gene symbols in
    ``var['feature_name']`` (the index holds synthetic Ensembl-style IDs, as CELLxGENE files do).
    """
    d = _design(
        n_cells, n_genes, seed, frac_low_quality, frac_outliers, batch_strength, frac_doublets
    )
    X = sp.vstack(list(_count_chunks(d, seed, device, chunk_size, progress)), format="csr")
    adata = ad.AnnData(X=X, obs=_obs(d), var=d["var"])
    adata.uns.update(_uns(d, seed))
    logger.info(f"synthetic dataset: {n_cells} cells x {n_genes} genes, {X.nnz} non-zeros")
    return adata


def _design(
    n_cells, n_genes, seed, frac_low_quality, frac_outliers, batch_strength, frac_doublets=0.04
) -> dict:
    """Every random choice except the counts: genes, profiles, cells and their ground truth."""
    if n_cells < 50:
        raise ParameterError(f"n_cells={n_cells} is too small for the demo: use at least 50.")
    rng = np.random.default_rng(seed)
    var = _gene_table(n_genes)
    sym = var["feature_name"].to_numpy()
    idx = {s: i for i, s in enumerate(sym)}
    is_mt = np.isin(sym, MT_GENES)

    # Gene abundances: log-normal background; the mean sets the dispersion (NB: var = mu + phi mu^2).
    base = rng.lognormal(mean=0.0, sigma=1.6, size=n_genes)
    base[np.isin(sym, RIBO_GENES)] *= 25
    base[np.isin(sym, HOUSEKEEPING)] *= 80
    base[is_mt] = 0
    base /= base.sum()
    phi = 0.05 + 0.4 * rng.random(n_genes)

    types = list(CELL_TYPES)
    profiles = np.empty((len(types), n_genes))
    for k, t in enumerate(types):
        p = base * np.exp(rng.normal(0.0, 0.25, n_genes) * (rng.random(n_genes) < 0.05))
        markers = [idx[g] for g in CELL_TYPES[t][1]]
        p[markers] = np.quantile(base, 0.995) * rng.uniform(4, 10, len(markers))
        profiles[k] = p / p.sum()
    # The differentiation programme: background genes that rise, fall or peak along pseudotime.
    n_named = len(named_genes())
    prog = rng.choice(np.arange(n_named, n_genes), size=min(300, n_genes - n_named), replace=False)
    shape_kind = np.full(n_genes, -1)
    shape_kind[prog] = np.arange(prog.size) % 3  # 0 rises, 1 falls, 2 peaks mid-way
    amp = np.zeros(n_genes)
    amp[prog] = rng.uniform(1.5, 3.0, prog.size)
    mt_profile = np.where(is_mt, rng.uniform(0.5, 1.5, n_genes), 0.0)
    mt_profile /= mt_profile.sum()

    # Cells: type, assay, pseudotime, quality.
    shares = np.array([CELL_TYPES[t][0] for t in types])
    type_idx = rng.choice(len(types), size=n_cells, p=shares / shares.sum())
    assays = list(ASSAYS)
    a_share = np.array([ASSAYS[a][0] for a in assays])
    assay_idx = rng.choice(len(assays), size=n_cells, p=a_share / a_share.sum())
    k0, k1 = types.index(TRAJECTORY[0]), types.index(TRAJECTORY[1])
    on_traj = np.isin(type_idx, [k0, k1])
    t = np.full(n_cells, np.nan)
    from_start = type_idx == k0
    t[on_traj & from_start] = rng.beta(1.3, 5.0, (on_traj & from_start).sum())
    t[on_traj & ~from_start] = rng.beta(5.0, 1.3, (on_traj & ~from_start).sum())
    type_idx[on_traj] = np.where(t[on_traj] < 0.5, k0, k1)

    qc_class = np.zeros(n_cells, dtype=np.int8)  # 0 good, 1 low quality, 2 outlier
    r = rng.random(n_cells)
    qc_class[r < frac_low_quality] = 1
    qc_class[(r >= frac_low_quality) & (r < frac_low_quality + frac_outliers)] = 2
    lib = (
        rng.lognormal(np.log(3500), 0.35, n_cells)
        * np.array([ASSAYS[a][1] for a in assays])[assay_idx]
    )
    lib[qc_class == 1] *= rng.uniform(0.04, 0.3, (qc_class == 1).sum())
    lib[qc_class == 2] = rng.uniform(60_000, 120_000, (qc_class == 2).sum())
    mt_frac = np.clip(rng.normal(0.04, 0.012, n_cells), 0.005, 0.12)
    mt_frac[qc_class == 1] = rng.uniform(0.25, 0.7, (qc_class == 1).sum())

    batch_fc = np.exp(rng.normal(0.0, batch_strength, (len(assays), n_genes)))
    batch_fc[:, is_mt] = 1.0

    # Heterotypic doublets among good cells off the lineage; their own generator, so that the
    # other draws stay as they were
    drng = np.random.default_rng([seed, 2])
    partner = np.full(n_cells, -1)
    pool = np.flatnonzero((qc_class == 0) & ~on_traj)
    n_doublets = min(int(round(frac_doublets * n_cells)), pool.size)
    dbl = drng.choice(pool, n_doublets, replace=False)
    other = drng.choice(len(types) - 1, n_doublets, p=None)
    partner[dbl] = other + (other >= type_idx[dbl])  # any type but the cell's own
    lib[dbl] *= 1.8

    return {k: v for k, v in locals().items() if k not in ("rng",)}


def _count_chunks(d: dict, seed: int, device: str, chunk_size: int | None, progress: bool):
    """Draw the counts cell chunk by cell chunk; yield each chunk as a host CSR matrix."""
    (n_cells, n_genes, profiles, mt_profile, batch_fc, phi, shape_kind, amp, type_idx, assay_idx, t,
     k0, k1, mt_frac, lib, partner) = (d[k] for k in (
        "n_cells", "n_genes", "profiles", "mt_profile", "batch_fc", "phi", "shape_kind", "amp",
        "type_idx", "assay_idx", "t", "k0", "k1", "mt_frac", "lib", "partner"))  # fmt: skip
    xp = _xp(device)
    if chunk_size is None:
        chunk_size = max(1, int((2e8 if device == "gpu" else 2e7) // n_genes))
    profiles_d, mt_d, fc_d, phi_d = (xp.asarray(a) for a in (profiles, mt_profile, batch_fc, phi))
    up_d, down_d, peak_d = (xp.asarray((shape_kind == k).astype(float))[None, :] for k in (0, 1, 2))
    amp_d = xp.asarray(amp)[None, :]
    gen = xp.random.default_rng(seed + 1) if device == "gpu" else np.random.default_rng(seed + 1)
    starts = range(0, n_cells, chunk_size)
    for s in tqdm(starts, desc="generating cells", disable=not progress or len(starts) < 2):
        e = min(s + chunk_size, n_cells)
        ti, ai = xp.asarray(type_idx[s:e]), xp.asarray(assay_idx[s:e])
        tt = xp.asarray(np.nan_to_num(t[s:e], nan=-1.0))[:, None]
        p = profiles_d[ti]
        pa = partner[s:e]
        if (pa >= 0).any():  # a doublet: the mean of the two cells' profiles
            pa_d = xp.asarray(pa)
            p = xp.where((pa_d >= 0)[:, None], 0.5 * (p + profiles_d[xp.maximum(pa_d, 0)]), p)
        traj = tt >= 0
        p = xp.where(traj, (1 - tt) * profiles_d[k0] + tt * profiles_d[k1], p)
        bump = xp.exp(-(((tt - 0.5) / 0.18) ** 2))
        prog_x = up_d * tt + down_d * (1 - tt) + peak_d * bump
        p = p * xp.where(traj, xp.exp(amp_d * prog_x), 1.0)
        p = p * fc_d[ai]
        p = p / p.sum(axis=1, keepdims=True)
        mf = xp.asarray(mt_frac[s:e])[:, None]
        mu = (p * (1 - mf) + mt_d[None, :] * mf) * xp.asarray(lib[s:e])[:, None]
        lam = gen.gamma(1.0 / phi_d[None, :], mu * phi_d[None, :])
        counts = gen.poisson(lam).astype(xp.float32)
        if device == "gpu":
            import cupyx.scipy.sparse as csp

            m = csp.csr_matrix(counts).get()
        else:
            m = sp.csr_matrix(counts)
        del mu, lam, counts
        yield m


def _obs(d: dict) -> pd.DataFrame:
    types, assays, type_idx, assay_idx, t, qc_class, n_cells, partner = (
        d[k]
        for k in ("types", "assays", "type_idx", "assay_idx", "t", "qc_class", "n_cells", "partner")
    )
    classes = np.array(["good", "low_quality", "outlier"])
    return pd.DataFrame(
        {
            "cell_type": pd.Categorical(np.array(types)[type_idx], categories=types),
            "assay": pd.Categorical(np.array(assays)[assay_idx], categories=assays),
            "true_pseudotime": t,
            "is_low_quality": qc_class > 0,
            "qc_class": pd.Categorical(classes[qc_class], categories=list(classes)),
            "is_doublet": partner >= 0,
            "doublet_partner": pd.Categorical(
                np.where(partner >= 0, np.array(types)[np.maximum(partner, 0)], None),
                categories=types,
            ),
        },
        index=pd.Index([f"cell{i:07d}" for i in range(n_cells)], name="barcode"),
    )


def _uns(d: dict, seed: int) -> dict:
    return {
        "planted_markers": {k: list(v[1]) for k, v in CELL_TYPES.items()},
        "synthetic": {
            "generator_version": VERSION,
            "seed": seed,
            "trajectory": list(TRAJECTORY),
            "trajectory_genes": d["sym"][d["prog"]].tolist(),
            "batch_key": "assay",
            "label_key": "cell_type",
            "description": "Synthetic PBMC-like raw UMI counts made by scplaybook; not real data.",
        },
    }


def write_synthetic_h5ad(
    path: str | Path,
    n_cells: int,
    n_genes: int,
    *,
    seed: int = 0,
    device: Literal["cpu", "gpu"] = "cpu",
    chunk_size: int | None = None,
    progress: bool = True,
) -> int:
    """Generate :func:`synthetic_pbmc` data straight into a ``.h5ad``, chunk by chunk.

    For sizes that do not fit host memory as one matrix (1.3M cells x 20k genes is 2.8 billion
    non-zeros): the counts are appended to the file as they are drawn, with 32-bit gene indices.
    Returns the number of non-zeros.

    Parameters
    ----------
    path
        The ``.h5ad`` to write.
    n_cells, n_genes
        Size of the dataset.
    seed
        Seed of the generator.
    device
        ``"gpu"`` draws the counts with CuPy.
    chunk_size
        Cells drawn and written at a time (default: from the size).
    progress
        Show a progress bar.

    Returns
    -------
    The number of non-zeros written.
    """
    import h5py

    from ..io._write import atomic_path

    d = _design(n_cells, n_genes, seed, 0.05, 0.005, 0.25, 0.04)
    with atomic_path(path) as tmp:
        head = ad.AnnData(obs=_obs(d), var=d["var"])
        head.uns.update(_uns(d, seed))
        head.write_h5ad(tmp)
        with h5py.File(tmp, "a") as f:
            if "X" in f:
                del f["X"]
            g = f.create_group("X")
            g.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0"})
            g.attrs["shape"] = (n_cells, n_genes)
            data = g.create_dataset("data", (0,), "float32", maxshape=(None,), chunks=(1 << 20,))
            indices = g.create_dataset(
                "indices", (0,), "int32", maxshape=(None,), chunks=(1 << 20,)
            )
            indptr, nnz = [np.zeros(1, np.int64)], 0
            for m in _count_chunks(d, seed, device, chunk_size, progress):
                data.resize((nnz + m.nnz,))
                indices.resize((nnz + m.nnz,))
                data[nnz:] = m.data
                indices[nnz:] = m.indices
                indptr.append(m.indptr[1:].astype(np.int64) + nnz)
                nnz += m.nnz
            indptr = np.concatenate(indptr)
            # 32-bit row pointers where they suffice, as SciPy makes them; past 2^31 non-zeros
            # the gene indices stay 32-bit (scplaybook.read then reads the file in row chunks)
            g.create_dataset("indptr", data=indptr.astype(np.int32) if nnz < 2**31 else indptr)
    logger.info(f"synthetic dataset written to {path}: {n_cells} x {n_genes}, {nnz} non-zeros")
    return nnz


def demo_file_name(n_cells: int, n_genes: int, seed: int) -> str:
    """File name of a demo dataset in the cache (the generator version in it: no stale file)."""
    return f"demo_pbmc_v{VERSION}_{n_cells}x{n_genes}_seed{seed}.h5ad"


def write_demo(path: str | Path, **kwargs) -> Path:
    """Generate the demo dataset and write it atomically to ``path`` (``.h5ad``).

    Parameters
    ----------
    path
        The ``.h5ad`` to write (replaced atomically).
    **kwargs
        Passed to :func:`synthetic_pbmc` (``n_cells``, ``n_genes``, ``seed``...).

    Returns
    -------
    ``path``.
    """
    from pathlib import Path as _Path

    from ..io._write import atomic_write_h5ad

    path = _Path(path)
    adata = synthetic_pbmc(**kwargs)
    atomic_write_h5ad(adata, path)
    return path
