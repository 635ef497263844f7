"""The API reference (docs/) builds from the docstrings with warnings as errors and documents
every public name of every subpackage."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="needs the docs extra: pip install -e '.[docs]'")

DOCS = Path(__file__).resolve().parents[1] / "docs"
SUBPACKAGES = (
    "data", "nn", "heads", "models", "symmetry", "kernels", "train", "simulate", "qmc", "testing",
)  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once into a temporary folder exactly as the README says (``-W``)."""
    out = tmp_path_factory.mktemp("docs") / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
               str(DOCS), str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"sphinx failed:\n{result.stdout}\n{result.stderr}"
    return out


def test_pages_exist(site):
    for page in ("index", "genindex", "py-modindex", "search"):
        assert (site / f"{page}.html").is_file(), page
    for name in SUBPACKAGES:
        assert (site / "api" / f"{name}.html").is_file(), name


def test_key_names_rendered(site):
    models = (site / "api" / "models.html").read_text()
    assert 'id="equivar.models.build"' in models
    assert "Keyword Arguments" in models  # build's options, as napoleon renders them
    testing = (site / "api" / "testing.html").read_text()
    assert 'id="equivar.testing.assert_equivariant"' in testing
    nn = (site / "api" / "nn.html").read_text()
    # our custom Google-style sections render as headed sections, not as stray text
    assert '<p class="rubric">Shapes</p>' in nn
    assert '<p class="rubric">References</p>' in nn
    assert "Shapes:" not in nn


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_public_name_documented(site, name):
    module = importlib.import_module(f"equivar.{name}")
    html = (site / "api" / f"{name}.html").read_text()
    missing = [attr for attr in module.__all__ if f'id="equivar.{name}.{attr}"' not in html]
    assert not missing, (
        f"equivar.{name}.__all__ names missing from docs/api/{name}.rst's page: {missing} "
        "(write a docstring; a constant needs a `#:` comment and an `autodata` line)"
    )
