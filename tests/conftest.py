from __future__ import annotations

import os

import pytest

import scplaybook as scp

os.environ.setdefault("MPLBACKEND", "Agg")


def _has_gpu() -> bool:
    return scp.gpu_available()


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with rapids-singlecell")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _reset_settings():
    scp.settings.backend = "auto"
    scp.settings.figdir = None
    scp.settings.timings.clear()
    yield


@pytest.fixture(scope="session")
def raw_adata():
    """A small synthetic dataset (raw counts, symbols in var['feature_name'])."""
    return scp.datasets.synthetic_pbmc(1500, 3000, seed=3, progress=False)


@pytest.fixture
def adata(raw_adata):
    """A fresh copy with gene symbols as var_names, as scplaybook.read returns it."""
    a = raw_adata.copy()
    a.var_names = a.var["feature_name"].astype(str).to_numpy()
    return a
