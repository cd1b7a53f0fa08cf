"""Session-wide settings: backend, figure folder and the timing record."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Backend = Literal["auto", "gpu", "cpu"]

logger = logging.getLogger("scplaybook")
if not logger.handlers:
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _default_figure_workers() -> int:
    env = os.environ.get("SCPLAYBOOK_FIGURE_WORKERS")
    if env is not None:
        return max(0, int(env))
    # the CPU demo on 2 cores: the plots in the kernel 11.9 -> 3.8 s, but the CPU steps beside the
    # worker were as much slower (neighbours, t-SNE and Scrublet use every core)
    return min(4, (os.cpu_count() or 1) // 4)


@dataclass
class Settings:
    """Settings shared by every step of a session.

    Attributes
    ----------
    backend
        ``"auto"`` (GPU when rapids-singlecell imports and a CUDA device is visible),
        ``"gpu"`` or ``"cpu"``.
    figdir
        Folder where every plot is also saved as PNG; ``None`` saves nothing.
    timings
        One record per timed step, in the order the steps ran.
    figure_workers
        Processes that draw a notebook's figures while the analysis goes on (default: a quarter
        of the CPU cores, at most 4, so none below 4 cores, where the CPU steps need them all;
        ``SCPLAYBOOK_FIGURE_WORKERS`` sets it); ``0`` draws them in the kernel. Outside a notebook
        figures are always drawn in the calling process.
    """

    backend: Backend = "auto"
    figdir: Path | None = None
    timings: list[dict] = field(default_factory=list)
    figure_workers: int = field(default_factory=_default_figure_workers)

    def set_figdir(self, path: str | Path | None) -> None:
        """Save later plots as PNG under ``path`` (created when missing)."""
        if path is None:
            self.figdir = None
            return
        self.figdir = Path(path)
        self.figdir.mkdir(parents=True, exist_ok=True)


settings = Settings()


def package_version() -> str:
    """Return the installed package's version, or the checkout's (``"0.1.0+checkout"``).

    The checkout's is read from ``pyproject.toml``, for the package imported from ``src/`` without
    being installed, as inside the container (``"0+unknown"`` without one).
    """
    import tomllib
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scplaybook")
    except PackageNotFoundError:
        pass
    try:
        meta = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
        return f"{meta['project']['version']}+checkout"
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"
