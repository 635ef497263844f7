"""One cache root for every cache: ``$EQUIVAR_CACHE``, else ``$XDG_CACHE_HOME/equivar``, else
``~/.cache/equivar``; the older ``$EQUIVAR_CACHE_DIR`` still works, with a DeprecationWarning."""

import ast
import importlib
import warnings
from pathlib import Path

import pytest

from equivar.cache import cache_dir


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("EQUIVAR_CACHE", "EQUIVAR_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_root_in_order_of_precedence(clean_env, tmp_path):
    assert cache_dir() == tmp_path / "home" / ".cache" / "equivar"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("nbody") == tmp_path / "xdg" / "equivar" / "nbody"
    clean_env.setenv("EQUIVAR_CACHE", str(tmp_path / "mine"))
    assert cache_dir("triton", "x.py") == tmp_path / "mine" / "triton" / "x.py"
    clean_env.setenv("EQUIVAR_CACHE", "")  # empty counts as unset
    assert cache_dir() == tmp_path / "xdg" / "equivar"


def test_every_cache_user_reads_the_same_root(clean_env, tmp_path):
    nbody, qm9, cpu_fused = (importlib.import_module(f"equivar.{m}") for m in (
        "data.datasets.nbody", "data.datasets.qm9", "kernels.cpu_fused"))
    clean_env.setenv("EQUIVAR_CACHE", str(tmp_path / "mine"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nbody.cache_dir() == qm9.cache_dir() == cpu_fused._cache_dir() == tmp_path / "mine"
    assert qm9.cache_path().parent == tmp_path / "mine"
    assert nbody.cache_dir(tmp_path / "given") == tmp_path / "given"  # an explicit root wins


def test_the_old_variable_still_works_with_a_deprecation_warning(clean_env, tmp_path):
    nbody = importlib.import_module("equivar.data.datasets.nbody")
    clean_env.setenv("EQUIVAR_CACHE_DIR", str(tmp_path / "old"))
    with pytest.warns(DeprecationWarning, match="EQUIVAR_CACHE_DIR is deprecated.*EQUIVAR_CACHE"):
        assert nbody.cache_dir() == tmp_path / "old"
    clean_env.setenv("EQUIVAR_CACHE", str(tmp_path / "new"))
    with pytest.warns(DeprecationWarning, match="ignored because EQUIVAR_CACHE is set"):
        assert cache_dir() == tmp_path / "new"


def test_the_cache_module_is_a_low_layer():
    """It imports nothing from equivar, so any layer may use it."""
    tree = ast.parse(Path(importlib.import_module("equivar.cache").__file__).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m and m.split(".")[0] == "equivar"]
