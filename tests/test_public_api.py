"""Every public name of every subpackage resolves to what it names, whatever was imported first.

A submodule named like a function it defines (``qmc/vmc.py`` defining ``vmc``) was bound over the
package's lazy attribute by Python's import system as soon as anything imported the submodule:
``from equivar.qmc import vmc`` then gave the module. No public name may share its module's name.
"""

import subprocess
import sys

import equivar

SUBPACKAGES = ["data", "nn", "heads", "models", "symmetry", "kernels", "train", "simulate", "qmc",
               "testing"]  # fmt: skip


def test_no_public_name_is_shadowed_by_a_submodule():
    code = f"""
import importlib, pkgutil, types
import equivar
bad = []
for sub in {SUBPACKAGES!r}:
    pkg = importlib.import_module("equivar." + sub)
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        try:
            importlib.import_module(info.name)  # every submodule first: the worst order
        except ImportError:
            pass  # optional dependencies (triton, cuequivariance)
    for name in pkg.__all__:
        value = getattr(pkg, name)
        if isinstance(value, types.ModuleType) and name not in getattr(pkg, "__submodules__", ()):
            bad.append(pkg.__name__ + "." + name)
print(bad)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"public names that resolve to modules: {out.stdout}"


def test_the_functions_named_like_their_former_modules_resolve():
    from equivar.qmc import vmc
    from equivar.simulate import rollout

    assert callable(vmc) and callable(rollout)
    assert callable(equivar.models.build)
