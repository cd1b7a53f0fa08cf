"""Scanpy-style timed logging, with a record of every step for the timing table."""

from __future__ import annotations

import functools
import time
from datetime import timedelta
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from ._backend import synchronize
from ._errors import GPUMemoryError
from ._settings import logger, settings

if TYPE_CHECKING:
    from collections.abc import Callable

P = ParamSpec("P")
R = TypeVar("R")


def _fmt(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds, 2)))


def timed(step: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Log a step's start and end with its duration, and record it in ``settings.timings``.

    The step's backend is the ``_backend`` it reports through :func:`note_backend` (default
    ``"cpu"``). GPU work is synchronised before the clock stops.
    """

    def deco(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            label = step
            key = kwargs.get("key_added") or kwargs.get("neighbors_key")
            if isinstance(key, str):
                label = f"{step} ({key})"
            logger.info(f"{label} ...")
            _current.append("cpu")
            t0 = time.perf_counter()
            try:
                out = func(*args, **kwargs)
                synchronize()
            except MemoryError as e:
                raise _oom(label, e) from e
            except Exception as e:
                if type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower():
                    raise _oom(label, e) from e
                raise
            finally:
                backend = _current.pop()
            dt = time.perf_counter() - t0
            settings.timings.append({"step": label, "seconds": round(dt, 4), "backend": backend})
            logger.info(f"    finished {label} on {backend.upper()} ({_fmt(dt)})")
            return out

        return wrapper

    return deco


_current: list[str] = []


def _oom(step: str, e: BaseException) -> GPUMemoryError:
    if isinstance(e, GPUMemoryError):
        return e
    return GPUMemoryError(
        f"{step} ran out of memory ({type(e).__name__}: {e}). Results up to this step are kept. "
        "To go on: use the memory-aware path for large data, analyse fewer cells (subsample or "
        "split by sample), lower n_top_genes/n_pcs, or use a GPU with more memory."
    )


def note_backend(backend: str) -> str:
    """Tell the running timed step which backend it used; returns ``backend``."""
    if _current:
        _current[-1] = backend
    return backend
