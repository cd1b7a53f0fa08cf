"""Figures drawn in worker processes while the notebook goes on: all of them in the notebook and on
disk, also when a worker is killed, interrupted, or a cell fails after a plot."""

import base64
import os

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

SETUP = """
import os, signal
import matplotlib.pyplot as plt
import numpy as np
import scplaybook as scp
from scplaybook import _figures
from scplaybook.pl._plots import _finish

scp.settings.figure_workers = 1
scp.settings.set_figdir({figdir!r})
_figures.start()
_figures._pool.submit(os.getpid).result()  # the worker is up

def figure(name, n=20_000):
    fig, ax = plt.subplots()
    ax.scatter(*np.random.default_rng(0).random((2, n)), s=1)
    ax.set_title(name)
    _finish(fig, name)
    return _figures._pending[-1]
"""

CELLS = [
    # drawn by the worker, not the kernel
    "d = figure('first')\nprint('drawn by', 'worker' if d.future.result()[1] != os.getpid() else 'kernel')",
    # the worker killed while it draws: the figure is drawn in the kernel, the next by a new worker
    "workers = list(_figures._pool._processes)\nd = figure('killed', 400_000)\n"
    "for pid in workers: os.kill(pid, signal.SIGKILL)\nd.future.exception(timeout=120)",
    "d = figure('after_kill')\nd.future.result(timeout=120)\nprint('worker again')",
    # Ctrl-C in Jupyter reaches the kernel's process group: the workers go on
    "for pid in _figures._pool._processes: os.kill(pid, signal.SIGINT)\n"
    "d = figure('after_interrupt')\nd.future.result(timeout=120)\nprint('interrupt ignored')",
    # a cell that fails after its plot keeps the plot
    "figure('before_error')\nraise ValueError('a later step failed')",
    # a worker too slow for wait(): the kernel draws the figure itself
    "_figures.WAIT_S = 0.0\nfigure('too_slow', 400_000)\n_figures.wait()\n_figures.WAIT_S = 300.0",
    "figure('last')\n_figures.wait()\nprint(sorted(p.name for p in scp.settings.figdir.iterdir()))",
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    figdir = tmp_path_factory.mktemp("figures")
    nb = new_notebook(
        cells=[new_code_cell(SETUP.format(figdir=str(figdir)))] + [new_code_cell(c) for c in CELLS]
    )
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=300).execute()
    finally:
        os.environ.pop("MPLBACKEND")
    return nb, figdir


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _pngs(cell) -> list[bytes]:
    return [
        base64.b64decode(o["data"]["image/png"])
        for o in cell.outputs
        if "image/png" in o.get("data", {})
    ]


def test_every_figure_is_in_the_notebook_and_on_disk(executed):
    nb, figdir = executed
    names = ["first", "killed", "after_kill", "after_interrupt", "before_error", "too_slow", "last"]
    assert sorted(p.stem for p in figdir.glob("*.png")) == sorted(names)
    for cell, name in zip(nb.cells[1:], names, strict=True):
        assert _pngs(cell) == [(figdir / f"{name}.png").read_bytes()], name
    placeholders = [
        o
        for c in nb.cells
        for o in c.outputs
        if "drawing figures/" in o.get("data", {}).get("text/plain", "")
    ]
    assert not placeholders


def test_drawn_by_a_worker_process(executed):
    nb, _ = executed
    assert "drawn by worker" in _text(nb.cells[1])


def test_a_killed_or_interrupted_worker_loses_no_figure(executed):
    nb, _ = executed
    assert "worker again" in _text(nb.cells[3])
    assert "interrupt ignored" in _text(nb.cells[4])
    assert "figure too_slow: its worker failed (TimeoutError" in _text(nb.cells[6])
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert [e["evalue"] for e in errors] == ["a later step failed"]  # only the planted one


def test_outside_a_notebook_figures_are_drawn_in_place(tmp_path):
    """Scripts (no inline backend) draw and save at the call, as before."""
    import matplotlib.pyplot as plt

    import scplaybook as scp
    from scplaybook import _figures
    from scplaybook.pl._plots import _finish

    scp.settings.set_figdir(tmp_path)
    try:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        _finish(fig, "here")
    finally:
        scp.settings.set_figdir(None)
    assert (tmp_path / "here.png").read_bytes()[:4] == b"\x89PNG"
    assert not _figures._pending and _figures._pool is None


def test_a_person_watching_sees_the_picture_without_running_another_cell(tmp_path):
    """JupyterLab gets the picture as a display update when the worker is done, after the cell
    ended (what a person running one cell sees), not only when a later cell runs."""
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        seen = []
        for code in (SETUP.format(figdir=str(tmp_path)), "figure('watched', 300_000)"):
            reply = kc.execute_interactive(code, output_hook=seen.append, timeout=120)
            assert reply["content"]["status"] == "ok", reply["content"]
        shown = [m for m in seen if m["msg_type"] == "display_data"]
        display_id = shown[-1]["content"]["transient"]["display_id"]
        assert "drawing figures/watched.png" in shown[-1]["content"]["data"]["text/plain"]
        # 300,000 points take the worker far longer to draw than the cell takes to end
        updates = [m for m in seen if m["msg_type"] == "update_display_data"]
        assert not updates
        while not updates:  # the cell is over: its picture still comes
            m = kc.get_iopub_msg(timeout=120)
            if m["msg_type"] == "update_display_data":
                updates.append(m)
        content = updates[0]["content"]
        assert content["transient"]["display_id"] == display_id
        png = base64.b64decode(content["data"]["image/png"])
        assert png == (tmp_path / "watched.png").read_bytes()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
