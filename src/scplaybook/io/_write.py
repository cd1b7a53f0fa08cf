"""Writing results so that a final name only ever holds a complete file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import PlaybookError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from anndata import AnnData


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    On any failure (full disk, read-only folder, an exception while writing) the temporary file
    is removed, ``path`` keeps whatever it held before, and a :class:`PlaybookError` names it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent
        )
    except OSError as e:
        raise PlaybookError(
            f"Cannot write {path}: {e.strerror or e}. Choose a writable output folder "
            "(for example --out DIR) with free space."
        ) from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        # mkstemp makes 0600: results must be readable like any other file
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise PlaybookError(
            f"Writing {path} failed ({e.strerror or e}); nothing was left under that name. "
            "Free some disk space or choose another output folder."
        ) from e
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_write_h5ad(adata: AnnData, path: str | Path) -> Path:
    """Write ``adata`` to ``path`` atomically (GPU arrays are copied to the host first)."""
    from .._backend import x_on_gpu

    if x_on_gpu(adata):
        from ..get import to_cpu

        adata = to_cpu(adata, copy=True)
    return atomic_write(path, lambda p: adata.write_h5ad(p))
