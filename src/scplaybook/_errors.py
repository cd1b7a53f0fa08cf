"""Errors that the playbook raises for the user to read.

Each one names the file or parameter at fault and says what to do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anndata import AnnData


class PlaybookError(Exception):
    """Base class of every error the playbook raises on purpose."""


class InputError(PlaybookError, ValueError):
    """An input file or matrix that the playbook cannot use as it is."""


class ParameterError(PlaybookError, ValueError):
    """A parameter that does not fit the data or is not known."""


class BackendError(PlaybookError, TypeError):
    """Data on one device met a function forced onto the other."""


class GPUMemoryError(PlaybookError, MemoryError):
    """A step ran out of GPU memory."""


class DownloadError(PlaybookError, OSError):
    """A download failed; the final file was left untouched."""


def check_obsm_key(adata: AnnData, key: str, *, arg: str) -> None:
    """Raise a :class:`ParameterError` naming ``arg`` and what ``obsm`` has, when ``key`` is not there."""
    if key not in adata.obsm:
        raise ParameterError(
            f"{arg}={key!r} is not in obsm; it has: {', '.join(adata.obsm) or 'nothing'}."
        )
