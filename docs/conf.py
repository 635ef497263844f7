"""Sphinx configuration: the API reference, built from the docstrings.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import sys

from sphinx.pycode import ModuleAnalyzer

import equivar

project = "equivar"
author = "The equivar developers"
copyright = "2026, The equivar developers"
version = release = equivar.__version__

extensions = [
    "sphinx.ext.autodoc",  # API pages from the docstrings
    "sphinx.ext.napoleon",  # Google-style Args:/Returns:/Raises: sections
    "sphinx.ext.mathjax",  # the .. math:: blocks in docstrings
]

exclude_patterns = ["_build"]
root_doc = "index"

# Docstrings are Google style; "Shapes:" is ours (free text, kept as written, under a heading),
# "References:" is built into napoleon.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ["Shapes"]
napoleon_use_rtype = False

# One page per public subpackage, documenting its ``__all__`` (the curated names, wherever the
# private module that defines them is) in that order; a class's members in source order.
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"

html_theme = "alabaster"
html_title = f"equivar {release}"
html_static_path: list[str] = []


def _constant_doc(app, what, name, obj, options, lines):
    """Docstring of a re-exported constant (``equivar.models.PRESETS``): its ``#:`` comment where
    it is defined. autodoc reads the comments of the documented module (the package) only, and
    otherwise shows the docstring of the value's type (``dict``)."""
    if what != "data":
        return
    package, _, attr = name.rpartition(".")
    for modname in sorted(m for m in sys.modules if m.startswith(package + ".")):
        if getattr(sys.modules[modname], attr, None) is not obj:
            continue
        analyzer = ModuleAnalyzer.for_module(modname)
        analyzer.analyze()
        comment = analyzer.attr_docs.get(("", attr))
        if comment:
            lines[:] = list(comment)
            return
    if lines and "\n".join(lines).strip() == (type(obj).__doc__ or "").strip():
        lines.clear()


def setup(app):
    app.connect("autodoc-process-docstring", _constant_doc)
