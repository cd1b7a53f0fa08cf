"""Writers of small 10x Genomics files for the reader tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import numpy as np
import scipy.io
import scipy.sparse as sp


def write_h5_v3(
    path: Path, X: sp.csr_matrix, genes: list[str], barcodes: list[str], genomes=None, drop=(),
    types=None,
):  # fmt: skip
    """``types``: each feature's type (default: all Gene Expression); others get no genome."""
    csc = sp.csc_matrix(X.T)  # 10x stores genes x cells, column = cell
    types = types or ["Gene Expression"] * len(genes)
    genomes = genomes or ["GRCh38" if t == "Gene Expression" else "" for t in types]
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        for k, v in {"barcodes": np.array(barcodes, dtype="S"), "data": csc.data.astype(np.int32),
                     "indices": csc.indices.astype(np.int64), "indptr": csc.indptr.astype(np.int64),
                     "shape": np.array(csc.shape, dtype=np.int32)}.items():  # fmt: skip
            if k not in drop:
                m.create_dataset(k, data=v)
        feat = m.create_group("features")
        feat.create_dataset(
            "id", data=np.array([f"ENSG{i:011d}" for i in range(len(genes))], dtype="S")
        )
        feat.create_dataset("name", data=np.array(genes, dtype="S"))
        feat.create_dataset("feature_type", data=np.array(types, dtype="S"))
        feat.create_dataset("genome", data=np.array(genomes, dtype="S"))
        feat.create_dataset("_all_tag_keys", data=np.array([b"genome"]))


def write_h5_v2(
    path: Path, X: sp.csr_matrix, genes: list[str], barcodes: list[str], genomes=("hg19",)
):
    csc = sp.csc_matrix(X.T)
    with h5py.File(path, "w") as f:
        for g in genomes:
            grp = f.create_group(g)
            grp.create_dataset("barcodes", data=np.array(barcodes, dtype="S"))
            grp.create_dataset("data", data=csc.data.astype(np.int32))
            grp.create_dataset("indices", data=csc.indices.astype(np.int64))
            grp.create_dataset("indptr", data=csc.indptr.astype(np.int64))
            grp.create_dataset("shape", data=np.array(csc.shape, dtype=np.int32))
            grp.create_dataset(
                "genes", data=np.array([f"ENSG{i:011d}" for i in range(len(genes))], dtype="S")
            )
            grp.create_dataset("gene_names", data=np.array(genes, dtype="S"))


def write_mtx(
    folder: Path,
    X: sp.csr_matrix,
    genes: list[str],
    barcodes: list[str],
    *,
    v3=True,
    gz=True,
    prefix="",
    types=None,
):
    folder.mkdir(parents=True, exist_ok=True)
    op = gzip.open if gz else open
    ext = ".gz" if gz else ""
    with op(folder / f"{prefix}matrix.mtx{ext}", "wb") as f:
        scipy.io.mmwrite(f, sp.coo_matrix(X.T.astype(np.int64)), field="integer")
    fname = "features.tsv" if v3 else "genes.tsv"
    with op(folder / f"{prefix}{fname}{ext}", "wt") as f:
        for i, g in enumerate(genes):
            t = types[i] if types else "Gene Expression"
            f.write(f"ENSG{i:011d}\t{g}" + (f"\t{t}\n" if v3 else "\n"))
    with op(folder / f"{prefix}barcodes.tsv{ext}", "wt") as f:
        f.write("\n".join(barcodes) + "\n")
