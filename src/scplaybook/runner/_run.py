"""Headless runs: execute the notebook with parameters and keep everything in a new run folder."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import random
import shutil
import sys
import threading
import traceback
import zipfile
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _figures
from .._backend import gpu_name, is_gpu_array
from .._dispatch import host
from .._errors import ParameterError, PlaybookError
from .._session import set_backend
from .._settings import logger, package_version, settings
from ..io._checksums import SUMS, result_files, sha256sum, write_checksums
from ..io._write import atomic_path, atomic_write, atomic_write_h5ad, atomic_write_text

if TYPE_CHECKING:
    from anndata import AnnData

NOTEBOOK_NAME = "scRNA_analysis_preprocessing.ipynb"
STATUS_FILE = "STATUS"
_VERSIONED = [
    "anndata", "scanpy", "numpy", "scipy", "pandas", "scikit-learn", "harmonypy",
    "igraph", "leidenalg", "umap-learn", "rapids-singlecell", "rapids-singlecell-cu12",
    "rapids-singlecell-cu13", "cupy-cuda12x", "cupy-cuda13x", "cuml-cu12", "cuml-cu13",
    "cugraph-cu12", "cugraph-cu13", "cupy", "cuml", "cugraph", "cudf", "papermill",
]  # fmt: skip


def default_notebook() -> Path:
    """Return the playbook notebook of this checkout (or ``$SCPLAYBOOK_NOTEBOOK``)."""
    env = os.environ.get("SCPLAYBOOK_NOTEBOOK")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / NOTEBOOK_NAME).exists():
            return parent / NOTEBOOK_NAME
    return Path.cwd() / NOTEBOOK_NAME


def new_run_dir(base: str | Path = "results") -> Path:
    """Create and return a new, empty folder ``base/run-YYYYmmdd-HHMMSS[-N]``; never reuses one."""
    base = Path(base)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PlaybookError(
            f"cannot create the results folder {base}: {e.strerror or e}. Use --out DIR."
        ) from e
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = base / (f"run-{stamp}" if n == 0 else f"run-{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise PlaybookError(
                f"cannot create a run folder in {base}: {e.strerror or e}. Use --out DIR."
            ) from e
        return path
    raise PlaybookError(f"{base} already holds 1000 runs from this second.")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "scplaybook": package_version()}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _sha256(path: str | Path | None) -> str | None:
    return sha256sum(Path(path)) if path and Path(path).is_file() else None


class Run:
    """One analysis run: its folder, figures, and the files it leaves.

    Use :meth:`start` at the top of the notebook and :meth:`save` at the end.
    """

    def __init__(self, path: Path, params: dict[str, Any], backend: str):
        self.path = path
        self.params = params
        self.backend = backend
        self._hash = None

    @classmethod
    def start(
        cls, output_dir: str | Path | None = None, *, params: dict[str, Any] | None = None
    ) -> Run:
        """Open the run folder (a new one under ``results/`` when ``output_dir`` is None).

        Sets the backend (``params['backend']``), the random seed (``params['seed']``), sends
        figures to ``figures/`` and starts a fresh timing table.
        """
        params = dict(params or {})
        path = (
            Path(output_dir)
            if output_dir
            else new_run_dir(os.environ.get("SCPLAYBOOK_RESULTS", "results"))
        )
        path.mkdir(parents=True, exist_ok=True)
        backend = set_backend(params.get("backend", "auto"))
        seed = int(params.get("seed", 0))
        random.seed(seed)
        np.random.seed(seed)
        settings.set_figdir(path / "figures")
        settings.timings.clear()
        _figures.start()
        if backend == "gpu":
            _say_if_first_compile()
        logger.info(
            f"run folder: {path}\nbackend: {backend.upper()}"
            + (f" ({gpu_name()})" if backend == "gpu" else "")
        )
        return cls(path, params, backend)

    def check(self, adata: AnnData) -> dict[str, Any]:
        """Settle the ``"auto"`` parameters against the data and check every parameter.

        Call it right after reading, before any long step: a parameter that does not fit the data
        stops the run there. The settled values are what ``provenance.json`` records.

        Parameters
        ----------
        adata
            The loaded data.

        Returns
        -------
        The parameters, ``"auto"`` settled (see :func:`check_params`).
        """
        self.params = check_params(adata, self.params)
        self._input_hash(adata)  # the input's checksum, read beside the analysis
        return self.params

    def _input_hash(self, adata: AnnData):
        """Return the input's path and its SHA-256 to come, computed in a thread from the first call.

        Hashing the input takes seconds for a file of gigabytes (hashlib and the reads let go of
        the GIL), so it runs while the analysis does and :meth:`save` only waits for the end.
        """
        if self._hash is None:
            from concurrent.futures import ThreadPoolExecutor

            src = self.params.get("data_path") or adata.uns.get("input_path")
            pool = ThreadPoolExecutor(1, thread_name_prefix="input-sha256")
            self._hash = (src, pool.submit(_sha256, src))
            pool.shutdown(wait=False)
        return self._hash

    def save_markers(
        self,
        adata: AnnData,
        *,
        de_keys: tuple[str, ...] = ("rank_genes_groups_logreg", "rank_genes_groups_wilcoxon"),
        n_markers: int = 25,
    ) -> None:
        """Write ``markers.csv`` (the top genes of each group, each method) as soon as they exist.

        Parameters
        ----------
        adata
            Data with differential-expression results.
        de_keys
            Keys of ``adata.uns`` with rank_genes_groups results.
        n_markers
            Genes per group and method.
        """
        import pandas as pd

        from ..get import markers

        tables = [
            markers(adata, key=k, n_genes=n_markers).assign(method=k.rsplit("_", 1)[-1])
            for k in de_keys
            if k in adata.uns
        ]
        if tables:
            df = pd.concat(tables, ignore_index=True)
            atomic_write(self.path / "markers.csv", lambda p: df.to_csv(p, index=False))

    def _input_counts(self, adata: AnnData):
        """Return the raw counts of the cells and genes of ``adata``, read again from its input.

        Kept as scanpy users expect (``layers['counts']``) without holding a copy through the
        analysis: the steps change ``X`` in place. ``None`` (logged) when they cannot be matched.
        """
        from .._chunks import is_dask
        from ..io import read

        path = adata.uns.get("input_path")
        if not path:
            return None
        p = self.params
        src = read(
            path, gene_symbols=p.get("gene_symbols", "auto"), counts=p.get("counts", "auto"),
            genome=p.get("genome"),
        )  # fmt: skip
        X = src.X
        if is_dask(X):
            if X.numblocks[0] > 1:
                logger.info("counts not kept in layers['counts']: the data were read in row chunks")
                return None
            X = X.compute()
        rows, cols = (
            src.obs_names.get_indexer(adata.obs_names),
            src.var_names.get_indexer(adata.var_names),
        )
        if (rows < 0).any() or (cols < 0).any():
            logger.info("counts not kept in layers['counts']: cells or genes renamed since reading")
            return None
        return X[rows][:, cols]

    def save(self, adata: AnnData) -> None:
        """Write ``adata.h5ad``, ``markers.csv``, ``timings.json`` and ``provenance.json``.

        Data still on the GPU is moved to host memory first (in place). The saved file has
        scanpy's keys: ``uns['rank_genes_groups']`` is the Wilcoxon result (else the first
        there), so that ``sc.pl.rank_genes_groups`` works on it as it is, and the raw counts of
        the cells and genes kept are in ``layers['counts']``.

        Parameters
        ----------
        adata
            The analysed data.
        """
        from ..get import timings, to_cpu

        hvg = _raw_columns_on_gpu(adata)  # before to_cpu: only these columns need slicing
        hvg_counts = None
        if hvg is not None:  # their counts too, on the GPU (1 s for 100M values on the host)
            hvg_counts = host(_counts_of(hvg, adata.obs, adata.uns))
            hvg = host(hvg)
        to_cpu(adata)
        self.save_markers(adata)
        if "rank_genes_groups" not in adata.uns:
            for k in ("rank_genes_groups_wilcoxon", "rank_genes_groups_logreg"):
                if k in adata.uns:
                    adata.uns["rank_genes_groups"] = adata.uns[k]
                    break
        saved = _as_saved(adata, hvg)
        if "counts" not in saved.layers:
            from_hvg = hvg_counts is not None and saved is not adata  # X is then hvg
            counts = hvg_counts if from_hvg else _counts_from_log_normalised(saved)
            if counts is None:  # not log-normalised from raw: read the input again
                counts = self._input_counts(adata)
            if counts is not None:
                saved.layers["counts"] = adata.layers["counts"] = _smallest_uint(counts)
        src, digest = self._input_hash(adata)
        prov = {
            "created": datetime.now().isoformat(timespec="seconds"),
            "backend": self.backend,
            "gpu": gpu_name() if self.backend == "gpu" else None,
            "host": platform.node(),
            "platform": platform.platform(),
            "parameters": self.params,
            "input": {"path": src, "sha256": digest.result()},
            "n_cells": adata.n_obs,
            "n_genes": adata.n_vars,
            "versions": _versions(),
        }
        atomic_write_text(self.path / "provenance.json", json.dumps(prov, indent=1, default=str))
        atomic_write_h5ad(saved, self.path / "adata.h5ad")
        # the last figures were drawn meanwhile: all of them are in the notebook and in figures/
        # before the timing table (which has the wait) and the checksums
        _figures.wait()
        atomic_write_text(
            self.path / "timings.json", json.dumps(timings().to_dict(orient="records"), indent=1)
        )
        write_checksums(self.path)
        logger.info(f"results saved in {self.path}")


RAW_MAX_NNZ = 50_000_000
"""``raw`` (all genes, log-normalised) is saved up to this many non-zeros (about 400 MB)."""


def _smallest_uint(counts):
    """Integer counts in the narrowest unsigned type that holds them (uint16 for most data)."""
    import scipy.sparse as sp

    from .._counts import not_counts

    data = counts.data if sp.issparse(counts) else np.asarray(counts)
    if not_counts(data) is not None:  # not non-negative integers: kept as they are
        return counts
    top = data.max() if data.size else 0
    for dtype in (np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return counts.astype(dtype)
    return counts


def _counts_from_log_normalised(saved: AnnData):
    """Return the counts behind ``saved.X`` (log1p of counts scaled to ``target_sum``), or ``None``.

    ``count = expm1(x) * total / target_sum``, rounded: exact for any count below about 10^5
    (float32 values), and no second read of the input file (at 200k cells, gigabytes).
    """
    import scipy.sparse as sp

    if not (saved.uns.get("X_is", "").startswith("log-normalised") and sp.issparse(saved.X)):
        return None
    return _counts_of(sp.csr_matrix(saved.X), saved.obs, saved.uns)


def _counts_of(X, obs, uns):
    """Return the counts behind log-normalised values ``X`` (SciPy or CuPy CSR), the same kind.

    ``None`` without the totals (``obs['n_counts_before_normalize']``) or the target sum.
    """
    totals = obs.get("n_counts_before_normalize")
    target = uns.get("normalize_total", {}).get("target_sum")
    if totals is None or target is None:
        return None
    if is_gpu_array(X):
        import cupy as xp
    else:
        xp = np
    rows = xp.searchsorted(xp.asarray(X.indptr), xp.arange(X.nnz), side="right") - 1
    scale = xp.asarray(totals.to_numpy(dtype=np.float64) / target)
    data = xp.rint(xp.expm1(X.data.astype(np.float64)) * scale[rows])
    return type(X)((data.astype(np.float32), X.indices, X.indptr), shape=X.shape)


def _raw_columns_on_gpu(adata: AnnData):
    """Return the columns of ``raw`` that ``adata`` keeps, taken on the GPU (still there); else ``None``.

    On the host, SciPy's column slice of all of ``raw`` (at 200k cells, 427M non-zeros) takes
    seconds; the GPU's column kernel takes milliseconds, and only the kept columns are copied.
    """
    from .._gpu import take_cols

    raw = adata.raw
    if raw is None or not is_gpu_array(raw.X) or not hasattr(raw.X, "indptr"):
        return None
    cols = raw.var_names.get_indexer(adata.var_names)
    if (cols < 0).any() or (np.diff(cols) <= 0).any():
        return None  # not a subset in raw's order: the host path below handles it
    return take_cols(raw.X, cols)


def _as_saved(adata: AnnData, X=None) -> AnnData:
    """Return what ``adata.h5ad`` holds: ``adata`` with ``X`` log-normalised and sparse, not scaled.

    The scaled, regressed matrix is dense (cells x genes x 4 bytes: 1.6 GB at 200k cells) and is
    recomputed from the log-normalised one in one call (``sc.pp.scale``). So ``X`` is the
    log-normalised values of the highly variable genes (from ``raw``), ``layers['counts']`` their
    counts, and ``raw`` (all genes) is kept up to :data:`RAW_MAX_NNZ` non-zeros. The arrays are
    shared, not copied; ``adata`` itself is unchanged. ``X``: those values already taken from
    ``raw`` (:func:`_raw_columns_on_gpu`).
    """
    import anndata as ad
    import scipy.sparse as sp

    raw = adata.raw
    if raw is None or not sp.issparse(raw.X) or sp.issparse(adata.X):
        return adata  # row chunks without raw, or X not the scaled matrix: saved as it is
    cols = raw.var_names.get_indexer(adata.var_names)
    if (cols < 0).any():
        return adata
    keep_raw = raw.X.nnz <= RAW_MAX_NNZ
    if not keep_raw:
        logger.info(
            f"adata.h5ad: raw (all {raw.n_vars} genes, {raw.X.nnz:,} non-zeros) is not saved, to keep "
            "the file small; the input file holds them"
        )
    out = ad.AnnData(
        X=sp.csr_matrix(raw.X[:, cols] if X is None else X),
        obs=adata.obs,
        var=adata.var,
        uns={**adata.uns, "X_is": "log-normalised (normalize_total, log1p); not scaled"},
        obsm=dict(adata.obsm),
        varm=dict(adata.varm),
        obsp=dict(adata.obsp),
        layers={k: v for k, v in adata.layers.items() if k is not None},
    )
    if keep_raw:
        out.raw = ad.AnnData(X=raw.X, obs=adata.obs[[]], var=raw.var)
    return out


def _say_if_first_compile() -> bool:
    """Tell the user when GPU kernels will be compiled (an empty kernel cache); return whether."""
    cache = Path(os.environ.get("CUPY_CACHE_DIR") or Path.home() / ".cupy" / "kernel_cache")
    if cache.is_dir() and any(cache.iterdir()):
        return False
    logger.info(
        f"first GPU run with the kernel cache {cache}: GPU kernels are compiled as each step first runs "
        "(about a minute in all); later runs reuse them."
    )
    return True


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """Turn ``KEY=VALUE`` strings into a dict; values are read as JSON where they parse, else text."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(f"--param {item!r} is not KEY=VALUE.")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """Return the names and defaults of the notebook's ``parameters`` cell.

    Returns
    -------
    ``{name: default}`` (defaults as the source text papermill reads).
    """
    pm = _papermill()
    return {k: v.get("default") for k, v in pm.inspect_notebook(str(notebook)).items()}


#: Seconds between papermill's saves of the notebook while it runs (it saves it whole at every
#: cell's start and end: 1.2-1.6 s of the demo's run on an H200 host, for a 3 MB notebook). The
#: notebook is still saved when the run ends, fails or its kernel dies.
SAVE_EVERY_S = 5.0

_ENGINE = "scplaybook"


@functools.cache
def _register_engine() -> None:
    """Register papermill's nbclient engine with saves at most every :data:`SAVE_EVERY_S` seconds (once)."""
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

    class SpacedSaves(NotebookExecutionManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.last_save_time -= timedelta(seconds=SAVE_EVERY_S)  # the first save is made

        def save(self, **kwargs):
            due = (self.now() - self.last_save_time).total_seconds() >= SAVE_EVERY_S
            if due or getattr(self, "_final", False):
                super().save(**kwargs)

        def notebook_complete(self, **kwargs):
            self._final = True  # the last save is never skipped
            super().notebook_complete(**kwargs)

    class Engine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True,
                             log_output=False, autosave_cell_every=30, **kwargs):  # fmt: skip
            nb_man = SpacedSaves(
                nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                autosave_cell_every=autosave_cell_every,
            )  # fmt: skip
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

    papermill_engines.register(_ENGINE, Engine)


def _papermill():
    """Import papermill without the RFC 3987 grammar that jsonschema builds when it is installed.

    ``jsonschema`` (via nbformat) imports ``rfc3987_syntax`` if present (JupyterLab's dependencies
    install it), which compiles a Lark grammar: 0.76 s of papermill's 1.05 s import on the
    development machine, paid before every headless run. Notebook validation uses no format
    that needs it. The import is refused only while papermill loads (``None`` in
    ``sys.modules`` is Python's documented way to refuse one), and only where nothing has
    imported jsonschema yet.
    """
    import sys

    if "papermill" in sys.modules or "jsonschema" in sys.modules:
        import papermill

        return papermill
    blocked = "rfc3987_syntax" not in sys.modules
    if blocked:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]
    try:
        import papermill
    finally:
        if blocked:
            del sys.modules["rfc3987_syntax"]
    return papermill


def _mark(path: Path, status: str, detail: str = "") -> None:
    atomic_write_text(path / STATUS_FILE, f"{status}\n{detail}".rstrip() + "\n")


ZIP_MAX_H5AD = 256 * 2**20
"""A larger ``adata.h5ad`` stays beside the zip instead of in it (no second copy of gigabytes)."""
_STORED = {".png", ".gz", ".jpg", ".h5ad"}  # compressed already, or too slow to deflate


class _Zip:
    """The run folder's zip (what a person downloads from JupyterLab), made beside its files.

    Made in two parts: the files already final when it is started (the data, figures and notebook,
    once the kernel has finished) are written in a thread while the runner makes the report;
    :meth:`finish` adds what came after (report, checksums, status) and puts the zip in the folder.
    PNGs and ``.h5ad`` are stored as they are (deflating them gains little and costs a minute at
    200k cells); an ``adata.h5ad`` over :data:`ZIP_MAX_H5AD` is left out (the zip says so).
    """

    _LATE = {STATUS_FILE, SUMS}  # rewritten after the notebook

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(folder.parent / f"{folder.name}.zip"))
        self._added: set[Path] = set()
        self._left: list[Path] = []
        self._error: BaseException | None = None
        self._z = zipfile.ZipFile(self._tmp, "w", zipfile.ZIP_DEFLATED)
        early = [f for f in result_files(folder) if f.name not in self._LATE]
        self._thread = threading.Thread(
            target=self._add_all, args=(early,), name="zip", daemon=True
        )
        self._thread.start()

    def _add_all(self, files: list[Path]) -> None:
        try:
            for f in files:
                self._added.add(f)
                if f.suffix == ".h5ad" and f.stat().st_size > ZIP_MAX_H5AD:
                    self._left.append(f)
                    continue
                info = zipfile.ZipInfo.from_file(
                    f, f"{self.folder.name}/{f.relative_to(self.folder)}"
                )
                info.compress_type = (
                    zipfile.ZIP_STORED if f.suffix in _STORED else zipfile.ZIP_DEFLATED
                )
                # large blocks: zlib and the writes let go of the GIL for each (ZipFile.write's
                # 8 KiB blocks waited on the report's thread for every one)
                with open(f, "rb") as src, self._z.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 16 * 2**20)
        except BaseException as e:  # noqa: BLE001 - raised again by finish()
            self._error = e

    def finish(self) -> Path:
        """Add the files made since the start, close the zip and return its path in the folder.

        Raises
        ------
        PlaybookError
            When it cannot be written (no partial zip is left).
        """
        self._thread.join()
        try:
            if self._error is not None:
                raise self._error
            self._add_all([f for f in result_files(self.folder) if f not in self._added])
            if self._error is not None:
                raise self._error
            if self._left:
                logger.info(
                    f"{', '.join(f.name for f in self._left)} is over {ZIP_MAX_H5AD // 2**20} MiB: "
                    "left out of the zip (download it from the run folder)"
                )
                self._z.writestr(
                    f"{self.folder.name}/NOT_IN_THIS_ZIP.txt",
                    "Too large to copy into the zip; download it from the run folder itself:\n"
                    + "".join(
                        f"{f.relative_to(self.folder)} ({f.stat().st_size / 2**30:.1f} GiB)\n"
                        for f in self._left
                    ),
                )
            self._z.close()
        except BaseException:
            with contextlib.suppress(Exception):
                self._z.close()
            # atomic_path removes the temporary file (and names the folder on a write error)
            if not self._stack.__exit__(*sys.exc_info()):
                raise
        self._stack.close()  # complete: renamed from its temporary name
        final = self.folder / f"{self.folder.name}.zip"
        os.replace(self.folder.parent / f"{self.folder.name}.zip", final)
        return final

    def abort(self) -> None:
        """Drop the partial zip (an interrupted run leaves nothing half-written behind)."""
        self._thread.join()
        with contextlib.suppress(Exception):
            self._z.close()
        self._stack.pop_all()
        self._tmp.unlink(missing_ok=True)


def _zip(folder: Path) -> Path:
    """Zip the run folder in one go (see :class:`_Zip`) and return the zip's path in it."""
    return _Zip(folder).finish()


def _html(nb_path: Path, out: Path, exporter: Any = None) -> None:
    import nbformat

    if exporter is None:
        from nbconvert import HTMLExporter

        exporter = HTMLExporter()
    body, _ = exporter.from_notebook_node(nbformat.read(nb_path, as_version=4))
    atomic_write_text(out, body)


class _ReportWarmup:
    """Import nbconvert and compile its HTML templates in a thread while the kernel runs.

    This process only waits on the kernel then; done after the run, the import and the first
    render's template compilation were 0.41 s of the report's 0.67 s on the CPU demo.
    """

    def __init__(self) -> None:
        self.exporter: Any = None
        self._thread = threading.Thread(target=self._warm, name="report-warmup", daemon=True)
        self._thread.start()

    def _warm(self) -> None:
        try:
            import nbformat
            from nbconvert import HTMLExporter

            exporter = HTMLExporter()
            exporter.from_notebook_node(
                nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("#")])
            )
            self.exporter = exporter
        except Exception:  # noqa: BLE001 - the report is made (or its error reported) after the run
            pass

    def get(self) -> Any:
        """Return the warmed exporter, or ``None`` (then :func:`_html` makes one and reports errors)."""
        self._thread.join()
        return self.exporter


class RunFailed(PlaybookError):
    """The notebook stopped with an error; the run folder says where and keeps what was made."""

    def __init__(self, message: str, path: Path, exit_code: int = 1):
        super().__init__(message)
        self.path = path
        self.exit_code = exit_code


def run_playbook(
    *,
    data: str | Path | None = None,
    out: str | Path = "results",
    params: dict[str, Any] | None = None,
    notebook: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Execute the notebook headless and return the new run folder.

    The folder (``out/run-<timestamp>``, never an existing one) gets the executed notebook,
    ``report.html``, ``adata.h5ad``, ``markers.csv``, ``timings.json``, ``provenance.json``,
    ``figures/*.png``, a ``.zip`` of all of it, and ``STATUS`` (``succeeded`` or ``failed``).

    Parameters
    ----------
    data
        Input ``.h5ad``, 10x ``.h5`` or 10x folder (``None``: the demo dataset).
    out
        Folder the run folder is made in.
    params
        Notebook parameters that differ from its defaults.
    notebook
        The notebook to run (default: the playbook's).
    progress
        Show a progress bar of the cells.

    Returns
    -------
    The run folder.

    Raises
    ------
    ParameterError
        Unknown parameter names, before anything runs.
    RunFailed
        The notebook failed; the partial folder is kept, marked failed, with ``error.txt``.
    """
    nb = Path(notebook) if notebook else default_notebook()
    if not nb.exists():
        raise PlaybookError(
            f"notebook {nb} not found; run from the playbook folder or set SCPLAYBOOK_NOTEBOOK."
        )
    params = dict(params or {})
    if data is not None:
        params["data_path"] = str(Path(data).expanduser().resolve())
    if params.get("data_path") and not Path(params["data_path"]).exists():
        raise ParameterError(f"--data {params['data_path']} does not exist.")
    # the kernel boots while this process imports papermill and checks the parameters
    kernel = _Kernel(os.environ.get("SCPLAYBOOK_KERNEL", "python3"), cwd=nb.parent)
    try:
        pm = _papermill()
        _register_engine()
        known = notebook_parameters(nb)
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ParameterError(
                f"unknown parameter(s) {', '.join(unknown)}; the notebook takes: "
                f"{', '.join(known)}."
            )
    except BaseException:
        kernel.stop()
        raise
    run_dir = new_run_dir(out)
    params["output_dir"] = str(run_dir.resolve())
    _mark(run_dir, "running")
    executed = run_dir / NOTEBOOK_NAME
    # papermill writes the notebook as it goes: under a temporary name, renamed when it ends
    # (ending in .ipynb: papermill warns in the user's terminal of any other suffix)
    partial = run_dir / f".{Path(NOTEBOOK_NAME).stem}.part.ipynb"
    logger.info(f"running {nb.name} -> {run_dir}")
    error: BaseException | None = None
    report = _ReportWarmup()
    try:
        pm.execute_notebook(
            str(nb), str(partial), parameters=params, cwd=str(nb.parent), progress_bar=progress,
            kernel_name=kernel.name, log_output=False, km=kernel.manager, engine_name=_ENGINE,
        )  # fmt: skip
    except BaseException as e:  # noqa: BLE001 - every failure is recorded, then re-raised below
        error = e
    # the results are saved by the last cell: the kernel (and the processes it started, its
    # process group) is killed rather than asked to exit, while the report is made
    stopping = kernel.stop(wait=False)
    if partial.exists():
        os.replace(partial, executed)
    # after a successful run every file but the report, checksums and status is final: the zip
    # starts on them while the report is made
    zipping = None
    if error is None:
        with contextlib.suppress(PlaybookError):  # then made, or its error raised, at the end
            zipping = _Zip(run_dir)
    try:
        if executed.exists():
            try:
                _html(executed, run_dir / "report.html", report.get())
            except Exception as e:  # noqa: BLE001 - a report failure must not hide the run's result
                logger.warning(f"could not write report.html: {e}")
        stopping.join()
    except BaseException:
        if zipping is not None:
            zipping.abort()
        raise
    if error is None:
        write_checksums(run_dir)
        _mark(run_dir, "succeeded")
        (zipping or _Zip(run_dir)).finish()
        logger.info(f"run succeeded: {run_dir}")
        return run_dir
    msg, code = _describe(error)
    atomic_write_text(
        run_dir / "error.txt", msg + "\n\n" + "".join(traceback.format_exception(error))
    )
    _mark(run_dir, "failed", msg)
    try:
        _zip(run_dir)
    except PlaybookError:
        pass
    if isinstance(error, KeyboardInterrupt):
        raise error
    raise RunFailed(
        f"run failed: {msg}\nPartial results are kept in {run_dir} (see error.txt).", run_dir, code
    ) from error


class _Kernel:
    """The notebook's kernel, started before papermill is imported (it boots meanwhile).

    Started as nbclient starts one (IPython history in memory) and given to papermill, which
    then leaves stopping it to :meth:`stop`.
    """

    def __init__(self, name: str, *, cwd: Path):
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync  # nbclient's: also inside a running event loop

        self.name = name
        self.manager = AsyncKernelManager(kernel_name=name)
        with _inline_plots():
            run_sync(self.manager.start_kernel)(
                cwd=str(cwd), extra_arguments=["--HistoryManager.hist_file=:memory:"]
            )

    def stop(self, *, wait: bool = True) -> threading.Thread:
        """Kill the kernel and its process group (in a thread unless ``wait``)."""
        from jupyter_core.utils import run_sync

        def kill() -> None:
            with contextlib.suppress(Exception):  # gone already
                run_sync(self.manager.shutdown_kernel)(now=True)

        thread = threading.Thread(target=kill, name="kernel-stop", daemon=True)
        thread.start()
        if wait:
            thread.join()
        return thread


@contextlib.contextmanager
def _inline_plots():
    """Give the kernel matplotlib's inline backend, so that the notebook and report show the plots.

    An ``MPLBACKEND=Agg`` set for headless jobs (common on clusters) would reach the kernel and
    leave every figure out of the executed notebook and ``report.html``.
    """
    before = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = before


def _describe(error: BaseException) -> tuple[str, int]:
    name = type(error).__name__
    if name == "PapermillExecutionError":
        ename, evalue = getattr(error, "ename", ""), getattr(error, "evalue", "")
        cell = getattr(error, "exec_count", None)
        return f"cell {cell} raised {ename}: {evalue}", 1
    if name == "DeadKernelError" or "Kernel died" in str(error):
        return (
            "the Python kernel died (killed, or out of host memory) before the notebook finished",
            3,
        )
    if isinstance(error, KeyboardInterrupt):
        return "interrupted by the user", 130
    return f"{name}: {error}", 1


@functools.cache
def notebook_parameter_names() -> tuple[str, ...]:
    """Return the parameter names of the playbook notebook's ``parameters`` cell."""
    return tuple(notebook_parameters(default_notebook()))


def check_params(adata: AnnData, params: dict[str, Any]) -> dict[str, Any]:
    """Settle ``"auto"`` parameters and check all of them against the data, before any long step.

    Parameters
    ----------
    adata
        The loaded data.
    params
        The notebook's parameters.

    Returns
    -------
    The parameters with ``"auto"`` settled (see :func:`scplaybook._recipe.resolve_params`).

    Raises
    ------
    ParameterError
        A batch or label column that is not in ``obs`` (the message lists those that are), a DPT
        root that is not a label, or more neighbours or PCs than the data allows.
    """
    from .._recipe import resolve_params

    params = resolve_params(adata, params)
    cols = ", ".join(map(str, adata.obs.columns)) or "none"
    batch_key, label_key = params.get("batch_key"), params.get("label_key")
    for name, key in (("batch_key", batch_key), ("label_key", label_key)):
        if key is not None and key in adata.obs and (n := int(adata.obs[key].isna().sum())):
            raise ParameterError(
                f"{name}={key!r}: {n} of {adata.n_obs} cells have no value (NaN) in obs[{key!r}]. "
                f"Give them one (e.g. adata.obs[{key!r}] = adata.obs[{key!r}].astype(str).replace('nan', "
                f"'unknown')), choose another column, or use {name}=None."
            )
    for name in ("resolution", "perplexity"):
        value = params.get(name)
        if value is not None and not (isinstance(value, int | float) and value > 0):
            raise ParameterError(f"{name}={value!r} must be a number above 0.")
    perplexity = params.get("perplexity")
    if perplexity is not None and int(3 * perplexity + 1) >= adata.n_obs:
        raise ParameterError(
            f"perplexity={perplexity} needs more than {int(3 * perplexity + 1)} cells for t-SNE "
            f"(3 x perplexity + 1); there are {adata.n_obs}. Lower the perplexity."
        )
    if batch_key is not None and batch_key not in adata.obs:
        raise ParameterError(
            f"batch_key={batch_key!r} is not a column of obs; the columns are: {cols}."
        )
    if label_key is not None and label_key not in adata.obs:
        raise ParameterError(
            f"label_key={label_key!r} is not a column of obs; the columns are: {cols} (or use None)."
        )
    root, groups = params.get("dpt_root"), params.get("dpt_groups")
    given = [str(g) for g in [root, *(groups or [])] if g not in (None, "auto")]
    if given and label_key is None:
        if not all(n.isdigit() for n in given):
            raise ParameterError(
                f"dpt_root={root!r} / dpt_groups={groups!r} name labels, but label_key is None, so groups are "
                "Leiden clusters ('0', '1', ...): give cluster numbers, or dpt_root=None to skip pseudotime."
            )
    if given and label_key is not None:
        present = set(adata.obs[label_key].astype(str))
        for g in given:
            if g not in present:
                raise ParameterError(
                    f"DPT group {g!r} is not a value of obs[{label_key!r}] ({', '.join(sorted(present))}); "
                    "set dpt_root/dpt_groups, or dpt_root=None to skip pseudotime."
                )
    n_neighbors, n_pcs, n_comps = (params.get(k) for k in ("n_neighbors", "n_pcs", "n_comps"))
    if n_neighbors is not None and n_neighbors >= adata.n_obs:
        raise ParameterError(
            f"n_neighbors={n_neighbors} needs more cells than the {adata.n_obs} in the data."
        )
    if n_comps is not None and n_comps >= min(adata.n_obs, adata.n_vars):
        raise ParameterError(
            f"n_comps={n_comps} is too many for {adata.n_obs} cells x {adata.n_vars} genes."
        )
    if n_pcs is not None and n_comps is not None and n_pcs > n_comps:
        raise ParameterError(
            f"n_pcs={n_pcs} is more than n_comps={n_comps}: raise n_comps or lower n_pcs."
        )
    if params.get("cell_markers") is not None:  # a table that is there, with genes of the data
        from ..tl._annotate import _marker_sets

        _marker_sets(params["cell_markers"], adata.var_names)
    return params
