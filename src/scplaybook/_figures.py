"""Figures drawn to PNG in worker processes while the analysis goes on.

Drawing a figure (Agg rendering and PNG encoding) is most of what a plot costs: about three
quarters of the plot steps on the demo, seconds that the notebook waited for between two analysis
steps. In a notebook, :func:`submit` shows a placeholder at once and hands the pickled figure to a
worker process (``spawn``: nothing of the kernel's CUDA state is shared), which draws it, writes
``figures/NAME.png`` and sends the PNG back; the placeholder is then replaced by the picture, a
Jupyter display update. After each cell, the figures already drawn are put in the notebook from
the kernel's main thread (what a headless run records); :func:`wait` waits for all of them, and
:meth:`scplaybook.runner.Run.save` and :func:`scplaybook.pl.timings` call it, so that a run's
results and its notebook are complete. A figure that cannot be pickled, or whose worker fails
(killed, say), is drawn in the kernel: no figure is lost.

``settings.figure_workers`` sets the number of workers: by default a quarter of the cores, at most
4, and none below 4 cores (there the CPU steps need every core); ``0`` (or
``SCPLAYBOOK_FIGURE_WORKERS=0``) draws every figure in the kernel, one after the other, as before.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import PlaybookError
from ._settings import logger, settings

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor
    from pathlib import Path

    from matplotlib.figure import Figure

DPI = 100
WAIT_S = 300.0
"""Seconds :func:`wait` gives the workers; a figure not drawn by then is drawn in the kernel."""


@dataclass
class _Drawing:
    name: str
    path: str
    data: bytes  # the pickled figure, drawn in the kernel if its worker fails
    future: Future
    handle: Any  # IPython's DisplayHandle of the placeholder
    png: bytes | None = field(default=None)


_pool: ProcessPoolExecutor | None = None
_pending: list[_Drawing] = []
_hooked = False


def render(fig: Figure) -> bytes:
    """Return ``fig`` as PNG bytes, as every saved figure is drawn."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, bbox_inches="tight", format="png")
    return buf.getvalue()


def save(fig: Figure, path: str | Path) -> bytes:
    """Draw ``fig``, write it to ``path`` as PNG (atomically) and return the PNG."""
    from .io._write import atomic_write

    png = render(fig)
    atomic_write(path, lambda p: p.write_bytes(png))
    return png


def _draw(data: bytes, path: str) -> tuple[bytes, int]:
    """Unpickle a figure, draw it and write ``path``; return the PNG and this process's id."""
    import matplotlib.pyplot as plt

    fig = pickle.loads(data)  # pickled by this package's own kernel, just now
    try:
        png = save(fig, path)
    finally:
        plt.close(fig)  # an unpickled figure joins pyplot's: the inline backend would show it again
    return png, os.getpid()


def _start_worker() -> None:
    """Start a worker: matplotlib imported and its fonts loaded before the first figure.

    Workers ignore Ctrl-C and Jupyter's interrupt, which are meant for the kernel's cell but reach
    its whole process group.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.text(0.5, 0.5, "warm")
    render(fig)


def _executor() -> ProcessPoolExecutor:
    global _pool
    if _pool is None or getattr(_pool, "_broken", False):  # a worker killed: start afresh
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        n = settings.figure_workers
        _pool = ProcessPoolExecutor(
            max_workers=n,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
        )
        for _ in range(n):  # started now rather than at the first figures
            _pool.submit(os.getpid)
    return _pool


def in_notebook() -> bool:
    """Whether figures go to a Jupyter notebook through matplotlib's inline backend."""
    import matplotlib

    return "inline" in matplotlib.get_backend()


def start() -> None:
    """Start the worker processes ahead of the first figure (in a notebook with workers set)."""
    if settings.figure_workers > 0 and in_notebook():
        _executor()


def submit(fig: Figure, path: Path, name: str) -> bool:
    """Hand ``fig`` to a worker, show a placeholder; ``False`` if it is to be drawn here instead.

    Figures are drawn elsewhere only in a notebook (the inline backend), with
    ``settings.figure_workers`` > 0, and when the figure can be pickled.
    """
    if settings.figure_workers <= 0 or not in_notebook():
        return False
    try:
        with warnings.catch_warnings():  # itertools' pickling deprecation, from some artists
            warnings.simplefilter("ignore", DeprecationWarning)
            data = pickle.dumps(fig, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - any figure that does not pickle is drawn in the kernel
        logger.debug(f"figure {name} drawn in the kernel ({type(e).__name__}: {e})")
        return False
    from IPython.display import display

    handle = display({"text/plain": f"drawing figures/{path.name} ..."}, raw=True, display_id=True)
    try:
        future = _executor().submit(_draw, data, str(path))
    except RuntimeError:  # the pool broke or shut down just now (BrokenProcessPool is one)
        future = _failed(RuntimeError("no figure worker"))
    drawing = _Drawing(name, str(path), data, future, handle)
    _pending.append(drawing)
    # shown as soon as it is drawn, for a person watching the notebook
    future.add_done_callback(lambda _f, d=drawing: _show(d))
    _hook_cells()
    return True


def _failed(err: BaseException) -> Future:
    from concurrent.futures import Future

    f: Future = Future()
    f.set_exception(err)
    return f


def _show(d: _Drawing) -> None:
    """Replace ``d``'s placeholder by its picture, if it is drawn."""
    f = d.future
    if d.png is None and f.done() and not f.cancelled() and f.exception() is None:
        d.png = f.result()[0]
    if d.png is not None:
        from IPython.display import Image

        d.handle.update(Image(data=d.png))


def _record(d: _Drawing) -> str | None:
    """Put ``d`` in the notebook from the kernel's main thread, which a headless run records.

    A figure its worker could not draw (a worker killed, say) is drawn here. Returns what went
    wrong when it could not be drawn at all.
    """
    _pending.remove(d)
    err = d.future.exception() if d.future.done() else TimeoutError(f"not drawn in {WAIT_S:.0f} s")
    if err is not None:
        logger.info(f"figure {d.name}: its worker failed ({type(err).__name__}: {err}); drawn here")
        try:
            d.png = _draw(d.data, d.path)[0]
        except Exception as e:  # noqa: BLE001 - reported by wait(), after the other figures
            d.handle.update({"text/plain": f"figure {d.name} could not be drawn: {e}"}, raw=True)
            return f"{d.name} ({type(e).__name__}: {e})"
    _show(d)
    return None


def _after_cell(result: Any = None) -> None:
    """After each cell: record the figures drawn by now; all of them if the cell failed."""
    if result is not None and not result.success:
        wait(raise_errors=False)  # the figures made before the error are kept
        return
    for d in [d for d in _pending if d.future.done()]:
        _record(d)


def _hook_cells() -> None:
    global _hooked
    if _hooked:
        return
    from IPython import get_ipython

    ip = get_ipython()
    if ip is not None:
        ip.events.register("post_run_cell", _after_cell)
        _hooked = True


def wait(*, raise_errors: bool = True) -> None:
    """Wait for the figures still being drawn and put them in the notebook.

    Parameters
    ----------
    raise_errors
        Raise when a figure could not be drawn (after recording all the others).

    Raises
    ------
    PlaybookError
        A figure could not be drawn, by its worker nor in the kernel.
    """
    if not _pending:
        return
    from concurrent.futures import wait as wait_all

    from ._timing import timed

    timed("wait for figures")(wait_all)([d.future for d in _pending], timeout=WAIT_S)
    failed = [e for d in list(_pending) if (e := _record(d))]
    if failed and raise_errors:
        raise PlaybookError(
            f"figure(s) could not be drawn: {'; '.join(failed)}. The analysis results are not "
            "affected."
        )
