"""One reader for what users have: ``.h5ad``, 10x ``.h5`` and 10x matrix folders."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .._backend import resolve_backend
from .._chunks import distributed_client, is_dask
from .._counts import not_counts
from .._errors import InputError, ParameterError
from .._settings import logger

if TYPE_CHECKING:
    from anndata import AnnData

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MTX_NAMES = ("matrix.mtx.gz", "matrix.mtx")


def _sniff(path: Path) -> str:
    """Return ``"hdf5"``, ``"html"``, ``"gzip"``, ``"empty"`` or ``"unknown"`` from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head:
        return "empty"
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml")) or b"<html" in text[:200]:
        return "html"
    return "unknown"


def _mtx_prefixes(folder: Path) -> list[str]:
    """File-name prefixes of the 10x matrices in ``folder`` (``""`` for a plain ``matrix.mtx.gz``)."""
    found = []
    for f in sorted(folder.iterdir()):
        for name in _MTX_NAMES:
            if f.name.endswith(name) and f.name[: -len(name)] not in found:
                found.append(f.name[: -len(name)])
    return found


def _sample_name(prefix: str) -> str:
    """``GSM123_donor1_`` -> ``GSM123_donor1``: the prefix without its trailing separator."""
    return prefix.rstrip("_.-") or prefix


def _h5_kind(path: Path) -> tuple[str, list[str]]:
    """Classify an HDF5 file as ``"h5ad"``, ``"10x_v3"`` or ``"10x_v2"``; list its genomes."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
            if {"X", "obs", "var"} <= keys or "X" in keys and "obs" in keys:
                return "h5ad", []
            if "matrix" in keys:
                m = f["matrix"]
                missing = [
                    k for k in ("barcodes", "data", "indices", "indptr", "shape") if k not in m
                ]
                if "features" not in m:
                    missing.append("features")
                if missing:
                    raise InputError(
                        f"{path}: this 10x HDF5 file lacks the dataset(s) matrix/{', matrix/'.join(missing)}. "
                        "The file is incomplete: download or export it again."
                    )
                genomes = []
                if "genome" in m["features"]:  # features that are not genes have no genome ("")
                    genomes = sorted({g.decode() for g in m["features"]["genome"][:]} - {""})
                return "10x_v3", genomes
            groups = [k for k in keys if isinstance(f[k], h5py.Group)]
            v2 = [
                g
                for g in groups
                if "barcodes" in f[g] and ("genes" in f[g] or "gene_names" in f[g])
            ]
            if v2:
                for g in v2:
                    missing = [k for k in ("data", "indices", "indptr", "shape") if k not in f[g]]
                    if missing:
                        raise InputError(
                            f"{path}: genome {g!r} lacks the dataset(s) {', '.join(missing)}. "
                            "The file is incomplete: download or export it again."
                        )
                return "10x_v2", sorted(v2)
    except OSError as e:
        raise InputError(
            f"{path} could not be read as HDF5 ({e}): it looks truncated or corrupt. "
            "Download or copy it again (the fetch command verifies checksums)."
        ) from e
    raise InputError(
        f"{path} is an HDF5 file but neither an AnnData .h5ad nor a 10x Genomics .h5 "
        f"(top-level keys: {', '.join(sorted(keys)) or 'none'})."
    )


def read(
    path: str | Path,
    *,
    gene_symbols: str | None = "auto",
    genome: str | None = None,
    counts: str = "auto",
    check_counts: bool = True,
    chunk_cells: int | None = None,
) -> AnnData:
    """Read raw counts from a ``.h5ad``, a 10x ``.h5`` or a 10x matrix folder.

    Parameters
    ----------
    path
        The file or folder.
    gene_symbols
        Column of ``var`` that holds gene symbols, to use as ``var_names`` (the original names
        are kept in ``var['gene_ids']``). ``"auto"`` uses ``feature_name`` (CELLxGENE) when
        present; ``None`` keeps ``var_names`` as they are.
    genome
        Which genome of a multi-genome 10x file to read.
    counts
        Where a ``.h5ad`` keeps the raw counts: ``"X"``, ``"raw"`` (``raw.X``, with ``raw.var``) or
        the name of a layer. ``"auto"``: ``X`` when it holds counts, else ``raw.X``, else the first
        layer that does (``counts`` first), as CELLxGENE files keep log-normalised values in ``X``;
        the log says which.
    check_counts
        Refuse matrices that are not raw counts (see :func:`check_raw_counts`). A ``.h5ad`` read
        lazily (below) has its first cells checked here, and every value when it is read.
    chunk_cells
        Read ``X`` of a ``.h5ad`` lazily, as a Dask array of row chunks of this many cells, instead
        of all at once into host memory (the memory-aware path; see :func:`scplaybook.get.to_gpu`).
        ``None`` does so by itself for matrices of 2^31 non-zeros or more and when a Dask
        ``distributed`` client is active, with chunks of about 2^28 non-zeros. On the GPU
        backend, ``X`` of a CSR ``.h5ad`` is always left on disk until
        :func:`scplaybook.get.to_gpu` reads it straight into GPU memory (in one piece when it fits).

    Returns
    -------
    AnnData with float32 CSR counts (or a Dask array of them) and unique ``var_names``. Features
    of a 10x file that are not genes (Antibody Capture, CRISPR Guide Capture...) are not in ``X``:
    each type is kept aside as a cells x features table in ``obsm`` (``obsm['antibody_capture']``).
    A folder of several 10x matrices (GEO-style file prefixes) is read whole, with the prefix in
    ``obs['sample']``.

    Raises
    ------
    InputError
        For a missing, empty, truncated, corrupt or unknown file, or values that are not counts.
    ParameterError
        For a ``gene_symbols`` column, ``counts`` source or ``genome`` that the file does not have.
    """
    import anndata as ad
    import scanpy as sc

    path = Path(path).expanduser()
    source = "X"  # where the counts are (counts=)
    if not path.exists():
        raise InputError(
            f"{path} does not exist. Check the path, or run without --data for the demo dataset."
        )
    if path.is_dir():
        prefixes = _mtx_prefixes(path)
        if not prefixes:
            files = sorted(f.name for f in path.iterdir() if f.suffix in (".h5", ".h5ad"))
            raise InputError(
                f"{path} is a folder without a 10x matrix.mtx[.gz]. Give the .h5ad or .h5 file itself"
                + (f" (this folder has {', '.join(files[:5])})" if files else "")
                + ", or the folder holding matrix.mtx.gz, features.tsv.gz and barcodes.tsv.gz."
            )
        adata = _split_features(_read_samples(path, prefixes), path)
    else:
        kind = _sniff(path)
        if kind == "empty":
            raise InputError(
                f"{path} is empty (0 bytes): the download or copy failed. Fetch it again."
            )
        if kind == "html":
            raise InputError(
                f"{path} is an HTML page, not data: a download saved an error or login page. "
                "Check the URL and fetch it again."
            )
        if kind == "gzip" and not path.name.endswith(".mtx.gz"):
            plain = path.name.removesuffix(".gz")
            raise InputError(
                f"{path} is gzip-compressed: decompress it first (gunzip -k {path.name}), then give "
                f"{plain if plain != path.name else 'the file it holds'}."
            )
        if kind != "hdf5":
            if path.name.endswith((".mtx", ".mtx.gz")):
                raise InputError(
                    f"{path}: give the folder that holds this matrix, not the .mtx file."
                )
            raise InputError(
                f"{path} is not a format the playbook reads. Use an AnnData .h5ad, a 10x Genomics "
                ".h5, or a 10x matrix folder (matrix.mtx.gz, features.tsv.gz, barcodes.tsv.gz)."
            )
        from ._checksums import verify_checksum

        verify_checksum(path)
        h5kind, genomes = _h5_kind(path)
        if h5kind == "h5ad":
            source = _counts_source(path, counts, check=check_counts)
        nnz = _h5ad_nnz(path) if h5kind == "h5ad" and source == "X" else -1
        # row chunks when asked for, when one matrix cannot hold X, or to spread the work over the
        # workers of a Dask distributed client
        chunked = bool(chunk_cells) or nnz >= 2**31 - 1 or distributed_client() is not None
        if nnz >= 0 and (chunked or resolve_backend() == "gpu"):
            adata = _read_h5ad_lazy(path, chunk_cells, chunked=chunked, check=check_counts)
        elif h5kind == "h5ad":
            try:
                adata = ad.read_h5ad(path)
            except Exception as e:
                raise InputError(
                    f"{path} could not be read as .h5ad ({type(e).__name__}: {e}): it looks truncated "
                    "or corrupt. Download or copy it again."
                ) from e
            adata = _take_counts(adata, source)
        else:
            if len(genomes) > 1 and genome is None:
                raise ParameterError(
                    f"{path} holds several genomes ({', '.join(genomes)}): choose one with genome=..."
                )
            if genome is not None and genomes and genome not in genomes:
                raise ParameterError(
                    f"genome={genome!r} is not in {path}; it has: {', '.join(genomes)}."
                )
            try:
                adata = sc.read_10x_h5(path, genome=genome, gex_only=False)
            except Exception as e:
                raise InputError(
                    f"{path} could not be read as a 10x .h5 file ({type(e).__name__}: {e})."
                ) from e
            adata = _split_features(adata, path)
    adata = _set_gene_symbols(adata, gene_symbols, path)
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(
            f"{path} holds an empty matrix ({adata.n_obs} cells x {adata.n_vars} genes)."
        )
    if check_counts and is_dask(adata.X):
        # the first cells now; every chunk again as it is read (see _chunks.read_rows)
        problem = not_counts(_first_rows(path, adata.X.shape).data)
        if problem:
            raise InputError(f"{path}: {problem}")
    elif check_counts:
        where = "" if source == "X" else f" ({_where(source)})"
        adata.X = check_raw_counts(adata.X, source=f"{path}{where}")
    adata.uns["input_path"] = str(path.resolve())
    logger.info(f"read {path.name}: {adata.n_obs} cells x {adata.n_vars} genes")
    return adata


#: Layers looked at first for counts (then the others, in the file's order).
COUNT_LAYERS = ("counts", "raw_counts", "umi_counts", "umis")


def _head_values(elem, n: int = 2_000_000) -> np.ndarray:
    """Return the first ``n`` stored values of a matrix in an HDF5 file (sparse group or dense dataset)."""
    import h5py

    if isinstance(elem, h5py.Group):
        return elem["data"][:n]
    rows = max(1, n // max(1, elem.shape[1])) if elem.ndim == 2 else n
    return np.asarray(elem[:rows]).ravel()


def _where(source: str) -> str:
    return "raw.X" if source == "raw" else f"layers[{source!r}]"


def _counts_source(path: Path, counts: str, *, check: bool) -> str:
    """Return where the counts of a ``.h5ad`` are: ``"X"``, ``"raw"`` or a layer (see :func:`read`)."""
    import h5py

    with h5py.File(path, "r") as f:
        layers = list(f["layers"].keys()) if "layers" in f else []
        has_raw = "raw" in f and "X" in f["raw"]
        offer = (
            f"counts='X', 'raw' ({'present' if has_raw else 'absent here'}), a layer "
            f"({', '.join(layers) or 'none here'}) or 'auto'"
        )
        if counts == "raw" and not has_raw:
            raise ParameterError(f"counts='raw', but {path} has no raw.X. Use {offer}.")
        if counts not in ("auto", "X", "raw") and counts not in layers:
            raise ParameterError(f"counts={counts!r} is not in {path}. Use {offer}.")
        if counts != "auto":
            return counts
        if not check:
            return "X"
        x = f["X"]
        csr = isinstance(x, h5py.Group) and x.attrs.get("encoding-type") == "csr_matrix"
        shape = tuple(int(n) for n in x.attrs["shape"]) if csr else None
        if csr and 0 in shape:
            return "X"  # an empty matrix: read() says so
        # X's first cells: the values the lazy read checks too (see read)
        problem = not_counts(_first_rows(path, shape).data if csr else _head_values(x))
        if problem is None:
            return "X"
        candidates = (["raw"] if has_raw else []) + sorted(
            layers, key=lambda k: COUNT_LAYERS.index(k) if k in COUNT_LAYERS else len(COUNT_LAYERS)
        )
        for c in candidates:
            if not_counts(_head_values(f["raw"]["X"] if c == "raw" else f["layers"][c])) is None:
                logger.info(
                    f"counts='auto': X is not raw counts, so the counts come from {_where(c)} "
                    f"(counts='X', 'raw' or a layer's name chooses)"
                )
                return c
    others = (
        f"Neither {', '.join(map(_where, candidates))} holds counts either."
        if candidates
        else "The file has no raw.X or layers that could hold them."
    )
    raise InputError(
        f"{path}: X is not raw counts: {problem} {others} Use the file with the raw counts "
        "(a CELLxGENE dataset page offers it as its own download)."
    )


def _take_counts(adata: AnnData, source: str) -> AnnData:
    """``adata`` with the counts from ``source`` (``"X"``, ``"raw"`` or a layer) in ``X``."""
    import anndata as ad

    if source == "X":
        return adata
    if source != "raw":
        adata.X = adata.layers[source]
        return adata
    raw = adata.raw
    var = raw.var.copy()
    if var.index.isin(adata.var_names).all():  # e.g. gene symbols only in var['feature_name']
        for c in adata.var.columns.difference(var.columns):
            var[c] = adata.var[c].reindex(var.index)
    return ad.AnnData(X=raw.X, obs=adata.obs, var=var, uns=adata.uns, obsm=dict(adata.obsm))


def _split_features(adata: AnnData, path: Path) -> AnnData:
    """Keep gene expression in ``X``; each other feature type (antibodies...) aside in ``obsm``."""
    import re

    import pandas as pd

    if "feature_types" not in adata.var:
        return adata
    types = adata.var["feature_types"].astype(str).to_numpy()
    gex = types == "Gene Expression"
    if gex.all():
        return adata
    if not gex.any():
        raise InputError(
            f"{path} has no Gene Expression features (it has {', '.join(sorted(set(types)))}): "
            "the playbook analyses gene expression."
        )
    for t in sorted(set(types[~gex])):
        m = types == t
        key = re.sub(r"\W+", "_", t.lower()).strip("_")
        block = adata.X[:, m]
        adata.obsm[key] = pd.DataFrame(
            block.toarray() if sp.issparse(block) else np.asarray(block),
            index=adata.obs_names,
            columns=adata.var_names[m].astype(str),
        ).astype(np.float32)
        logger.info(
            f"{path.name}: {int(m.sum())} {t} feature(s) kept aside in obsm[{key!r}], not analysed; "
            f"X holds the {int(gex.sum())} genes"
        )
    out = adata[:, gex].copy()
    out.var = out.var.drop(columns="feature_types")
    return out


def _read_samples(folder: Path, prefixes: list[str]) -> AnnData:
    """Read a folder of one or several 10x matrices; several become one, ``obs['sample']`` apart."""
    import anndata as ad
    import pandas as pd

    if len(prefixes) == 1:
        return _read_mtx(folder, prefixes[0])
    parts, names = [], [_sample_name(p) or "matrix" for p in prefixes]
    for prefix, name in zip(prefixes, names, strict=True):
        a = _read_mtx(folder, prefix)
        if parts and not a.var["gene_ids"].equals(parts[0].var["gene_ids"]):
            raise InputError(
                f"{folder}: the samples do not list the same features ({name!r} differs from "
                f"{names[0]!r}), so they cannot be one matrix. Put each sample's three files in a "
                "folder of its own and analyse them one at a time."
            )
        a.obs_names = [f"{name}_{b}" for b in a.obs_names]
        a.obs["sample"] = name
        parts.append(a)
    adata = ad.concat(parts, merge="same")
    adata.obs["sample"] = pd.Categorical(adata.obs["sample"], categories=names)
    logger.info(
        f"{folder.name}: {len(parts)} samples ({', '.join(names)}) read as one matrix, the sample "
        "in obs['sample'] (batch_key='auto' corrects for it)"
    )
    return adata


def _h5ad_nnz(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        x = f.get("X")
        return int(x["data"].shape[0]) if isinstance(x, h5py.Group) and "data" in x else 0


def _read_h5ad_lazy(path: Path, chunk_cells: int | None, *, chunked: bool, check: bool) -> AnnData:
    """Open a ``.h5ad`` with ``X`` left on disk as a lazy Dask array of row chunks.

    ``chunked``: the chunks were asked for (``chunk_cells``, or too many non-zeros for one
    matrix). Otherwise ``X`` is lazy only so that :func:`scplaybook.get.to_gpu` reads it from the
    file straight into GPU memory, without a copy in host memory.
    """
    import anndata as ad
    import h5py
    from anndata.io import read_elem

    from .._chunks import even_bounds, h5ad_rows, row_bounds

    try:
        with h5py.File(path, "r") as f:
            g = f["X"]
            if g.attrs.get("encoding-type") != "csr_matrix":
                if not chunked:  # a dense or CSC X: read it as usual
                    return ad.read_h5ad(path)
                raise InputError(
                    f"{path}: reading in chunks needs X stored as CSR (cells in rows); it is "
                    f"{g.attrs.get('encoding-type')}. Rewrite it as CSR, or read it without chunk_cells."
                )
            shape = tuple(int(n) for n in g.attrs["shape"])
            indptr = g["indptr"][:]
            obs, var = read_elem(f["obs"]), read_elem(f["var"])
            uns = read_elem(f["uns"]) if "uns" in f else {}
    except InputError:
        raise
    except Exception as e:
        raise InputError(
            f"{path} could not be read as .h5ad ({type(e).__name__}: {e}): it looks truncated "
            "or corrupt. Download or copy it again."
        ) from e
    nnz = int(indptr[-1])
    client = distributed_client()
    if client is not None and not chunk_cells:
        # the same number of chunks (of about 2^28 non-zeros at most) for every worker
        n_workers = len(client.nthreads())
        bounds = even_bounds(indptr, n_workers * max(1, -(-nnz // (n_workers * 2**28))))
    else:
        bounds = row_bounds(indptr, 2**28, chunk_cells)
    X = h5ad_rows(str(path), shape, bounds, nnz=nnz, chunked=chunked, check=check)
    adata = ad.AnnData(X=X, obs=obs, var=var, uns=uns)
    n_empty = int((np.diff(indptr) == 0).sum())
    if n_empty:
        logger.warning(
            f"{path}: {n_empty} cell(s) have no counts at all; QC filtering removes them."
        )
    if chunked:
        logger.info(f"    X read lazily in {len(bounds) - 1} row chunks ({nnz} non-zeros)")
    return adata


def _first_rows(path: Path, shape: tuple[int, int], nnz: int = 2_000_000):
    """Read the first cells of ``X`` of a ``.h5ad`` (CSR), about ``nnz`` non-zeros, to the host."""
    import h5py

    from .._chunks import read_rows

    with h5py.File(path, "r") as f:
        indptr = f["X"]["indptr"]
        n = int(np.searchsorted(indptr[: shape[0] + 1], nnz, side="right"))
    return read_rows(str(path), 0, max(1, min(n, shape[0])), shape[1], gpu=False, check=False)


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _first(folder: Path, names: list[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).exists()), None)


def _read_mtx(folder: Path, prefix: str) -> AnnData:
    """Read a 10x matrix folder, v2 (genes.tsv) or v3 (features.tsv), plain or gzipped."""
    import anndata as ad
    import pandas as pd
    import scipy.io

    mtx = _first(folder, [f"{prefix}{n}" for n in _MTX_NAMES])
    feat = _first(
        folder,
        [
            f"{prefix}features.tsv.gz",
            f"{prefix}features.tsv",
            f"{prefix}genes.tsv.gz",
            f"{prefix}genes.tsv",
        ],
    )
    bc = _first(folder, [f"{prefix}barcodes.tsv.gz", f"{prefix}barcodes.tsv"])
    if feat is None:
        raise InputError(
            f"{folder} has a matrix but no {prefix}features.tsv.gz (or {prefix}genes.tsv): copy it in."
        )
    if bc is None:
        raise InputError(f"{folder} has a matrix but no {prefix}barcodes.tsv.gz: copy it in.")
    try:
        with _open(mtx) as f:
            X = sp.csr_matrix(scipy.io.mmread(f).T)
        with _open(feat) as f:
            genes = pd.read_csv(f, sep="\t", header=None, dtype=str)
        with _open(bc) as f:
            barcodes = pd.read_csv(f, sep="\t", header=None, dtype=str)[0].to_numpy()
    except (OSError, ValueError, EOFError) as e:
        raise InputError(
            f"{folder}: the 10x matrix files could not be read ({type(e).__name__}: {e})."
        ) from e
    if X.shape != (len(barcodes), len(genes)):
        raise InputError(
            f"{folder}: the matrix is {X.shape[1]} genes x {X.shape[0]} cells but {feat.name} lists "
            f"{len(genes)} genes and {bc.name} {len(barcodes)} barcodes: the files do not belong together."
        )
    var = pd.DataFrame({"gene_ids": genes[0].to_numpy()})
    if genes.shape[1] > 2:
        var["feature_types"] = genes[2].to_numpy()
    var.index = genes[1 if genes.shape[1] > 1 else 0].to_numpy()
    return ad.AnnData(X=X.astype(np.float32), obs=pd.DataFrame(index=barcodes), var=var)


def _set_gene_symbols(adata: AnnData, gene_symbols: str | None, path: Path) -> AnnData:
    if gene_symbols == "auto":
        gene_symbols = "feature_name" if "feature_name" in adata.var.columns else None
    if gene_symbols is not None:
        if gene_symbols not in adata.var.columns:
            raise ParameterError(
                f"gene_symbols={gene_symbols!r} is not a column of var in {path}; its columns are: "
                f"{', '.join(map(str, adata.var.columns)) or 'none'} (or use None to keep var_names)."
            )
        if "gene_ids" not in adata.var.columns:
            adata.var["gene_ids"] = adata.var_names.astype(str)
        adata.var_names = adata.var[gene_symbols].astype(str).to_numpy()
    if not adata.var_names.is_unique:
        n = int(adata.var_names.duplicated().sum())
        warnings.warn(
            f"{path}: {n} duplicate gene name(s) were made unique by appending -1, -2, ...",
            UserWarning,
            stacklevel=3,
        )
        adata.var_names_make_unique()
    adata.var_names.name = None
    return adata


def check_raw_counts(
    X, *, source: str = "the matrix", layers: list[str] | None = None, sample: int = 2_000_000
):
    """Check that ``X`` holds raw counts and return it as float32 CSR.

    Refuses negative, non-finite and non-integer values and says which it found (a log-normalised
    or scaled matrix is named as such). A dense matrix of integers is accepted and converted.

    Parameters
    ----------
    X
        A matrix (dense or sparse).
    source
        What to call it in messages (the file name).
    layers
        Layers the file has, suggested in the message when ``X`` is not counts.
    sample
        Stored values checked (the first ones); ``None``: all.

    Returns
    -------
    ``X`` as float32 CSR.

    Raises
    ------
    InputError
        With the problem and the fix.
    """
    if not sp.issparse(X):
        X = np.asarray(X)
        if X.dtype.kind not in "iuf":
            raise InputError(f"{source}: the matrix has dtype {X.dtype}, not numbers.")
        X = sp.csr_matrix(X)
    X = sp.csr_matrix(X) if not isinstance(X, sp.csr_matrix) else X
    data = X.data
    vals = (
        data
        if data.size <= sample
        else data[np.random.default_rng(0).integers(0, data.size, sample)]
    )
    hint = ""
    if layers:
        hint = (
            f" This file has layers {', '.join(layers)}: if one holds the counts, use counts=... ."
        )
    problem = not_counts(vals)
    if problem is None and vals.size < data.size and not np.all(np.isfinite(data)):
        problem = not_counts(np.array([np.nan], np.float32))
    if problem:
        raise InputError(f"{source}: {problem}{hint}")
    if X.dtype != np.float32:
        X = X.astype(np.float32)
    n_zero_cells = int((np.diff(X.indptr) == 0).sum())
    if n_zero_cells:
        logger.warning(
            f"{source}: {n_zero_cells} cell(s) have no counts at all; QC filtering removes them."
        )
    return X
