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
