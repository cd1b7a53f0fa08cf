"""The public API: what a user calls, each with numpydoc Parameters and Returns."""

from __future__ import annotations

import inspect

import pytest

import scplaybook as scp

NAMESPACES = [scp, scp.pp, scp.tl, scp.pl, scp.get, scp.io, scp.runner, scp.datasets]


def _public_functions():
    for ns in NAMESPACES:
        for name in ns.__all__:
            obj = getattr(ns, name)
            if inspect.isfunction(obj):
                yield f"{ns.__name__}.{name}", obj


@pytest.mark.parametrize(("name", "fn"), list(_public_functions()), ids=lambda x: x if isinstance(x, str) else "")  # fmt: skip
def test_public_function_is_documented(name, fn):
    doc = inspect.getdoc(fn) or ""
    sig = inspect.signature(fn)
    assert doc, name
    if len(sig.parameters) >= 2:
        assert "Parameters\n----------" in doc, f"{name}: no Parameters section"
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                continue
            assert p.name in doc, f"{name}: parameter {p.name} is not described"
    if sig.return_annotation not in (None, "None", inspect.Signature.empty):
        assert "Returns\n-------" in doc, f"{name}: no Returns section"


def test_plumbing_is_not_public():
    public = {n for ns in NAMESPACES for n in ns.__all__}
    for name in ("atomic_write", "atomic_write_text", "atomic_write_h5ad", "atomic_path",
                 "parse_params", "new_run_dir", "gpu_bytes_needed", "sha256sum", "write_checksums"):  # fmt: skip
        assert name not in public, name
    for ns in NAMESPACES:
        assert sorted(ns.__all__) == sorted(set(ns.__all__)) and all(
            hasattr(ns, n) for n in ns.__all__
        )


def test_namespaces_load_on_first_use():
    assert {"pp", "tl", "pl", "get", "io", "runner", "datasets", "read"} <= set(dir(scp))
    from scplaybook import pp, read

    assert pp is scp.pp and read is scp.io.read
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        scp.nope  # noqa: B018


def test_the_command_line_starts_without_the_analysis_stack():
    """``python -m scplaybook run`` waits on nothing it does not use before the kernel starts.

    Measured on the development machine: the package import 1.4 s -> 0.06 s (AnnData, Dask and
    matplotlib are the kernel's), papermill 1.05 -> 0.23 s (jsonschema's RFC 3987 grammar).
    """
    import subprocess
    import sys

    code = """import importlib.util, sys
from scplaybook.runner import _run
_run._papermill()
import nbformat
nbformat.validate(nbformat.v4.new_notebook())  # validation works without the grammar
heavy = [m for m in ("anndata", "dask", "matplotlib", "scanpy", "rfc3987_syntax") if m in sys.modules]
print(heavy, "rfc3987_syntax" in sys.modules and sys.modules["rfc3987_syntax"] is None)
if importlib.util.find_spec("rfc3987_syntax"):  # refused only while papermill loaded
    import rfc3987_syntax
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["[]", "False"], p.stdout
