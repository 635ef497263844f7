"""MD17-style data: the ten MD17 molecules by GFN2-xTB MD at 500 K, with the benchmark's splits.

The files are made by ``datasets/make_md17_xtb.py`` (ASE Langevin MD with tblite's GFN2-xTB; see
``datasets/README.md`` for the protocol) and ship with the repository as
``datasets/md17_xtb/<molecule>.npz`` in the MD17/sGDML layout, **with energies in eV and forces
in eV/Angstrom** (the original MD17 uses kcal/mol). Nothing is downloaded.

Splits (:func:`md17_splits`) follow the MD17 literature: a seeded random permutation of the
frames gives a fixed validation set (100 frames) and test set (400), and the training set is the
first ``train_size`` frames of the rest, so the 50-frame set lies inside the 1000-frame one and
both are scored on the same test frames. Consecutive frames are 5 fs apart and correlated, so a
random split is optimistic (as it is for MD17); ``mode="time"`` tests on the end of the
trajectory instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from equivar.data.dataset import AtomsDataset

__all__ = ["MOLECULES", "N_TEST", "N_VALID", "TRAIN_SIZES", "default_root", "load_md17",
           "md17_splits"]  # fmt: skip

#: the ten MD17 molecules (file stems)
MOLECULES = (
    "aspirin", "azobenzene", "benzene", "ethanol", "malonaldehyde", "naphthalene", "paracetamol",
    "salicylic_acid", "toluene", "uracil",
)  # fmt: skip
#: training-set sizes of the benchmark (``benchmarks/md17.py``)
TRAIN_SIZES = (1000, 50)
#: frames held out for validation and for testing (the same for every training size)
N_VALID = 100
N_TEST = 400
_SPLITS = ("train", "valid", "test")


def default_root() -> Path:
    """Where the files are: ``$EQUIVAR_MD17_DIR`` if set, else ``datasets/md17_xtb`` of the
    source tree this package was installed from (editable install)."""
    env = os.environ.get("EQUIVAR_MD17_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[4] / "datasets" / "md17_xtb"


def _molecule_name(molecule: str) -> str:
    if not isinstance(molecule, str):
        raise TypeError(f"molecule must be a string, got {type(molecule).__name__}")
    name = molecule.strip().lower().replace(" ", "_").replace("-", "_")
    if name not in MOLECULES:
        raise ValueError(f"unknown MD17 molecule {molecule!r}; choose one of {list(MOLECULES)}")
    return name


def md17_splits(
    n_frames: int,
    train_size: int,
    *,
    n_valid: int = N_VALID,
    n_test: int = N_TEST,
    seed: int = 0,
    mode: str = "random",
) -> dict[str, np.ndarray]:
    """Frame indices of the train, validation and test sets.

    Args:
        n_frames: frames in the trajectory.
        train_size: training frames (the benchmark uses 1000 and 50).
        n_valid, n_test: validation and test frames (default 100 and 400).
        seed: seed of the permutation (``numpy.random.default_rng(seed)``), ``"random"`` only.
        mode: ``"random"`` (default): valid = the first ``n_valid`` of a seeded permutation, test
            = the next ``n_test``, train = the next ``train_size``, so smaller training sets are
            nested in larger ones. ``"time"``: test = the last ``n_test`` frames in time, valid =
            the ``n_valid`` before them, train = ``train_size`` frames evenly spaced over the
            rest (a harder, less correlated split).

    Returns:
        ``{"train": ..., "valid": ..., "test": ...}``, int64 index arrays, disjoint.

    Example:
        >>> s = md17_splits(1500, 50)
        >>> [len(s[k]) for k in ("train", "valid", "test")]
        [50, 100, 400]
        >>> set(s["train"]) <= set(md17_splits(1500, 1000)["train"])
        True
    """
    for name, value in (("n_frames", n_frames), ("train_size", train_size),
                        ("n_valid", n_valid), ("n_test", n_test)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if train_size + n_valid + n_test > n_frames:
        raise ValueError(
            f"train_size {train_size} + n_valid {n_valid} + n_test {n_test} exceeds the "
            f"{n_frames} frames available"
        )
    if mode == "random":
        order = np.random.default_rng(seed).permutation(n_frames)
        bounds = np.cumsum([0, n_valid, n_test, train_size])
        valid, test, train = (order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    elif mode == "time":
        test = np.arange(n_frames - n_test, n_frames)
        valid = np.arange(n_frames - n_test - n_valid, n_frames - n_test)
        pool = n_frames - n_test - n_valid
        train = np.unique(np.round(np.linspace(0, pool - 1, train_size)).astype(np.int64))
        if len(train) != train_size:  # only when train_size is close to pool: take them all
            train = np.arange(train_size)
    else:
        raise ValueError(f"mode must be 'random' or 'time', got {mode!r}")
    return {"train": train.astype(np.int64), "valid": valid.astype(np.int64),
            "test": test.astype(np.int64)}  # fmt: skip


def load_md17(
    molecule: str,
    cutoff: float = 5.0,
    *,
    split: str | None = None,
    train_size: int = 1000,
    n_valid: int = N_VALID,
    n_test: int = N_TEST,
    seed: int = 0,
    mode: str = "random",
    root: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
) -> AtomsDataset:
    """One MD17-style molecule as graphs with ``energy`` (eV) and ``forces`` (eV/Angstrom).

    Args:
        molecule: one of :data:`MOLECULES` (``"salicylic acid"`` and ``"salicylic-acid"`` work).
        cutoff: neighbour cutoff (Angstrom, default 5).
        split: None (default): all frames in time order; ``"train"``, ``"valid"`` or ``"test"``:
            that part of :func:`md17_splits` (``train_size``, ``n_valid``, ``n_test``, ``seed``,
            ``mode`` are passed to it).
        root: folder of the ``.npz`` files (default :func:`default_root`).
        dtype: floating dtype of the graphs (default: torch's default). Total energies are
            about -100 to -700 eV, so float32 holds them to ~5e-5 eV; pass ``torch.float64``
            to keep every stored digit.

    Returns:
        An :class:`equivar.data.AtomsDataset`; its ``.atoms`` are the frames.

    Example:
        >>> train = load_md17("ethanol", cutoff=5.0, split="train", train_size=50)
        >>> len(train), sorted(train[0].keys())[:4]
        (50, ['cell', 'edge_index', 'energy', 'forces'])
    """
    from equivar.data.dataset import AtomsDataset
    from equivar.data.io import iread

    name = _molecule_name(molecule)
    if split is not None and split not in _SPLITS:
        raise ValueError(f"split must be None or one of {list(_SPLITS)}, got {split!r}")
    folder = Path(root) if root is not None else default_root()
    path = folder / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"MD17-style file {str(path)!r} not found; make it with "
            f"`python3 datasets/make_md17_xtb.py {name} --out-dir {folder}` or pass root=/ set "
            "EQUIVAR_MD17_DIR to the folder holding it"
        )
    frames = list(iread(path))  # ase.Atoms with energy and forces, as equivar.data.read
    if split is not None:  # graphs are built for the chosen frames only
        indices = md17_splits(len(frames), train_size, n_valid=n_valid, n_test=n_test,
                              seed=seed, mode=mode)  # fmt: skip
        frames = [frames[i] for i in indices[split].tolist()]
    return AtomsDataset(frames, cutoff, dtype=dtype)
