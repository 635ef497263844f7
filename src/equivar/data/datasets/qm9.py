"""QM9 from the PyPI package ``qm9pack``: a one-off npz cache, the standard split, published units.

QM9 (Ramakrishnan et al., Sci. Data 1, 140022, 2014) holds 133,885 molecules with up to nine
heavy atoms (C, N, O, F), relaxed with B3LYP/6-31G(2df,p). ``qm9pack`` 1.0.3 ships the 130,831
that remain after QM9's 3,054 "uncharacterized" molecules are removed (the set PyG, DimeNet,
PaiNN and Equiformer use) as CSV inside its wheel. Its ``import qm9pack`` needs
``pkg_resources``, which recent setuptools no longer ship, so this module finds the package
folder without importing it and reads the CSVs with pandas, as ``qm9pack.get_data()`` would.

Cache. The first call converts the CSVs (225 MB, about 4 s) into one uncompressed npz of
75,339,557 bytes in :func:`cache_dir` (``$EQUIVAR_CACHE``, else ``$XDG_CACHE_HOME/equivar``,
else ``~/.cache/equivar``), written to a temporary file and renamed, so a crash never leaves
half a file and two processes may build it at once. Later calls load it in about 0.1 s and do
not need ``qm9pack``. Everything is stored exactly as parsed from the CSV (the same float64
values as Python's ``float`` of each decimal): positions and every property are float64.
Positions carry 10 decimals (|x| <= 10.2 Angstrom). float32 would save 28 MB but move atoms by
up to 4.8e-7 Angstrom: that changes every float64 result, and at a 5 Angstrom cutoff it flips
one edge of one molecule (10 pairs in QM9 lie within 1e-6 Angstrom of 5 Angstrom), so it is
not used. The properties keep qm9pack's raw units (the column names say which) and are
converted when a dataset is built.

Units (:data:`TARGETS`), those of the published tables (SchNet, DimeNet++, PaiNN, EGNN,
Equiformer): ``U0, U, H, G`` in meV as *atomization* energies, i.e. minus the isolated-atom
energies of QM9's ``atomref.txt`` (:data:`ATOM_REFERENCES_HARTREE`), as DimeNet(++), PaiNN
(SchNetPack) and Equiformer train and report them (the subtraction is a fixed function of the
composition, so it leaves an MAE unchanged but keeps the numbers small); ``homo, lumo, gap,
zpve`` in meV; ``mu`` in debye (a magnitude: QM9 has no direction); ``alpha`` (isotropic) in
bohr^3; ``r2`` in bohr^2; ``cv`` in cal/(mol K); rotational constants in GHz. Hartree -> meV
uses ``1000 * ase.units.Hartree`` = 27211.386024367243 meV (CODATA 2014; PyG's 27.211386246 eV,
CODATA 2018, differs by 8e-9 relative).

Split (:func:`qm9_splits`): ``numpy.random.default_rng(seed).permutation(130831)``; train = its
first 110,000, validation = the next 10,000, test = the remaining 10,831, as in DimeNet, PaiNN,
TorchMD-Net and Equiformer (each with its own seed). ``limit`` takes the first ``limit``
molecules of a part, so smaller training sets are nested in larger ones.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ase.units import Hartree

from equivar._suggest import did_you_mean
from equivar.atomic import atomic_write
from equivar.cache import cache_dir as equivar_cache_dir

if TYPE_CHECKING:
    import pandas
    import torch

    from equivar.data.dataset import AtomsDataset

__all__ = [
    "ATOM_REFERENCES_HARTREE", "ENERGY_COLUMNS", "N_TRAIN", "N_VALID", "PLAIN_COLUMNS", "QM9_SIZE",
    "TARGETS", "build_cache", "cache_dir", "cache_path", "check_units", "load_arrays",
    "load_table", "qm9", "qm9_splits", "qm9pack_data_dir", "target_values",
]  # fmt: skip

#: molecules in qm9pack (QM9 without its 3,054 uncharacterized molecules)
QM9_SIZE = 130_831
#: the standard split: training and validation sizes; the test set is the rest (10,831)
N_TRAIN, N_VALID = 110_000, 10_000
_SPLITS = ("train", "valid", "test")
#: version of the cache layout; a cache of another version is rebuilt
CACHE_FORMAT = 1

#: qm9pack's energy columns (hartree) -> our names
ENERGY_COLUMNS = {
    "InternalEnergy_0K_au": "U0",
    "InternalEnergy_298K_au": "U",
    "Enthalphy_298K_au": "H",  # (sic: qm9pack's spelling)
    "GibbsFreeEnergy_298K_au": "G",
    "HOMO_au": "homo",
    "LUMO_au": "lumo",
    "HOMO_LUMO_gap_au": "gap",
    "ZPVE_au": "zpve",
}
#: qm9pack's other property columns (kept in QM9's own unit) -> our names
PLAIN_COLUMNS = {
    "Dipole_debye": "mu",  # debye, magnitude |mu| only
    "Polarizability_bohr3": "alpha",  # bohr^3, isotropic (trace / 3)
    "R2_bohr2": "r2",  # bohr^2, electronic spatial extent <R^2>
    "Heatcapacity_Cv_cal_mol_K": "cv",  # cal/(mol K) at 298.15 K
    "RotA_GHz": "rot_A",  # GHz
    "RotB_GHz": "rot_B",
    "RotC_GHz": "rot_C",
}
ALLOWED_ELEMENTS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
#: QM9 molecule 1 (methane), U0 in hartree: checks that qm9pack still stores hartree
METHANE_U0_HARTREE = -40.478930

#: isolated-atom energies of QM9's atomref.txt (B3LYP/6-31G(2df,p)), hartree, by atomic number
ATOM_REFERENCES_HARTREE = {
    "U0": {1: -0.500273, 6: -37.846772, 7: -54.583861, 8: -75.064579, 9: -99.718730},
    "U": {1: -0.498857, 6: -37.845355, 7: -54.582445, 8: -75.063162, 9: -99.717314},
    "H": {1: -0.497912, 6: -37.844411, 7: -54.581501, 8: -75.062219, 9: -99.716370},
    "G": {1: -0.510927, 6: -37.861317, 7: -54.598897, 8: -75.079532, 9: -99.733544},
}

_MEV = 1000.0 * Hartree  # hartree -> meV
#: target name -> (qm9pack column, factor to the published unit, published unit)
TARGETS: dict[str, tuple[str, float, str]] = {
    **{name: (col, _MEV, "meV") for col, name in ENERGY_COLUMNS.items()},
    "mu": ("Dipole_debye", 1.0, "D"),
    "alpha": ("Polarizability_bohr3", 1.0, "bohr^3"),
    "r2": ("R2_bohr2", 1.0, "bohr^2"),
    "cv": ("Heatcapacity_Cv_cal_mol_K", 1.0, "cal/(mol K)"),
    "rot_A": ("RotA_GHz", 1.0, "GHz"),
    "rot_B": ("RotB_GHz", 1.0, "GHz"),
    "rot_C": ("RotC_GHz", 1.0, "GHz"),
}
_CACHE_COLUMNS = [*ENERGY_COLUMNS, *PLAIN_COLUMNS]


def qm9pack_data_dir() -> Path:
    """Folder holding qm9pack's CSV files, found without importing qm9pack.

    Raises:
        ModuleNotFoundError: naming ``qm9pack`` when it is not installed.
    """
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "QM9 needs the PyPI package 'qm9pack' (all 130,831 molecules as CSV): "
            "pip install qm9pack, or pip install 'equivar[datasets]'",
            name="qm9pack",
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def qm9pack_version() -> str:
    """Installed qm9pack version ("" when not installed)."""
    try:
        return importlib.metadata.version("qm9pack")
    except importlib.metadata.PackageNotFoundError:
        return ""


def load_table(columns: Sequence[str] | None = None, nrows: int | None = None) -> pandas.DataFrame:
    """The table ``qm9pack.get_data()`` returns, built the same way from the same files.

    The three CSV parts are concatenated in order and inner-joined with the polarizability CSV
    on ``XYZ_file``: 130,831 rows sorted by QM9 index, in qm9pack's raw units.

    Args:
        columns: columns of the three parts to read (default: all); ``XYZ_file`` and ``Index``
            are always read. The polarizability columns (``A_xx`` ...) are always joined.
        nrows: read only the first ``nrows`` molecules (default: all), for tests.

    Returns:
        A ``pandas.DataFrame`` with one row per molecule.
    """
    import pandas as pd

    folder = qm9pack_data_dir()
    usecols = None if columns is None else list(dict.fromkeys(["XYZ_file", "Index", *columns]))
    parts, remaining = [], nrows
    for i in (1, 2, 3):
        if remaining is not None and remaining <= 0:
            break
        part = pd.read_csv(folder / f"qm9_part{i}.csv", usecols=usecols, nrows=remaining)
        parts.append(part)
        remaining = None if remaining is None else remaining - len(part)
    table = pd.concat(parts, ignore_index=True)
    polar = pd.read_csv(folder / "qm9_polarizability.csv")
    table = pd.merge(table, polar, on="XYZ_file", how="inner")
    if not table["Index"].is_monotonic_increasing:
        raise RuntimeError("qm9pack rows are not sorted by QM9 index; selection would change")
    return table


def check_units(table: pandas.DataFrame) -> None:
    """Fail loudly if qm9pack's energies are not in hartree (QM9's raw unit)."""
    first = table.iloc[0]
    if int(first["Index"]) != 1 or ("SMILES" in table and first["SMILES"] != "C"):
        raise RuntimeError("first qm9pack row is not QM9 molecule 1 (methane)")
    if abs(float(first["InternalEnergy_0K_au"]) - METHANE_U0_HARTREE) > 1e-6:
        raise RuntimeError("methane U0 does not match -40.478930 Ha: units changed?")
    if (table["Dipole_debye"] < 0).any():
        raise RuntimeError("negative dipole: qm9pack mu is expected to be a magnitude")


def _table_arrays(table: pandas.DataFrame) -> dict[str, np.ndarray]:
    """The cache's arrays from the table, parsed in bulk (each coordinate exactly as Python's
    ``float`` reads the CSV digits, the same values ``ast.literal_eval`` gives per row)."""
    n_atoms = table["N_atoms"].to_numpy(np.int64)  # [n_molecules]
    total = int(n_atoms.sum())
    # Each row's count of list items must match N_atoms before the rows are flattened.
    if not (table["Elements"].str.count(",").to_numpy() + 1 == n_atoms).all():
        raise RuntimeError("qm9pack: Elements list length differs from N_atoms")
    if not (table["XYZ_Ang"].str.count(",").to_numpy() + 1 == 3 * n_atoms).all():
        raise RuntimeError("qm9pack: XYZ_Ang list length differs from 3 * N_atoms")
    symbols = ",".join(table["Elements"]).translate(str.maketrans("", "", "[]' ")).split(",")
    unknown = set(symbols) - set(ALLOWED_ELEMENTS)
    if unknown:
        raise RuntimeError(f"qm9pack: unexpected elements {sorted(unknown)}")
    z = np.array([ALLOWED_ELEMENTS[s] for s in symbols], dtype=np.uint8)  # [total_atoms]
    digits = ",".join(table["XYZ_Ang"]).translate(str.maketrans("", "", "[] ")).split(",")
    pos = np.array([float(v) for v in digits], dtype=np.float64).reshape(-1, 3)
    if len(z) != total or len(pos) != total:
        raise RuntimeError("qm9pack: atom counts of Elements, XYZ_Ang and N_atoms differ")
    out = {
        "z": z,
        "pos": pos,  # [total_atoms, 3] Angstrom, float64
        "n_atoms": n_atoms.astype(np.uint8),  # [n_molecules], at most 29
        "qm9_index": table["Index"].to_numpy(np.int32),  # QM9 / GDB-9 number, 1..133885
    }
    for column in _CACHE_COLUMNS:
        out[column] = table[column].to_numpy(np.float64)  # [n_molecules], qm9pack's raw unit
    out["cache_format"] = np.array(CACHE_FORMAT)
    out["qm9pack_version"] = np.array(qm9pack_version())
    return out


def cache_dir() -> Path:
    """Where caches live: ``$EQUIVAR_CACHE``, else ``$XDG_CACHE_HOME/equivar``, else
    ``~/.cache/equivar`` (:func:`equivar.cache.cache_dir`)."""
    return equivar_cache_dir()


def cache_path(folder: str | os.PathLike | None = None) -> Path:
    """The QM9 cache file in ``folder`` (default :func:`cache_dir`)."""
    return Path(folder if folder is not None else cache_dir()) / f"qm9_v{CACHE_FORMAT}.npz"


def build_cache(path: str | os.PathLike | None = None, *, nrows: int | None = None) -> Path:
    """Convert qm9pack's CSVs into the npz cache, atomically (temporary file, then rename).

    Args:
        path: destination file (default :func:`cache_path`); folders are created.
        nrows: convert only the first ``nrows`` molecules (tests); default all 130,831.

    Returns:
        The path written.

    Shapes (of the arrays written):
        ``z [total_atoms] uint8``, ``pos [total_atoms, 3] float64`` (Angstrom),
        ``n_atoms [n] uint8``, ``qm9_index [n] int32``, one ``[n] float64`` array per property
        named by its qm9pack column (``InternalEnergy_0K_au``, ``Dipole_debye``, ...).
    """
    columns = ["N_atoms", "Elements", "XYZ_Ang", *_CACHE_COLUMNS]
    table = load_table(columns, nrows=nrows)
    check_units(table)
    arrays = _table_arrays(table)
    dest = Path(path) if path is not None else cache_path()
    # 0o644: a temporary file is private, but a cache is meant to be shared
    atomic_write(dest, lambda handle: np.savez(handle, **arrays), mode=0o644)
    return dest


def _usable(arrays: dict[str, np.ndarray]) -> bool:
    """True if a loaded cache has this layout and matches the installed qm9pack (if any)."""
    needed = {"z", "pos", "n_atoms", "qm9_index", "cache_format", *_CACHE_COLUMNS}
    if not needed <= set(arrays) or int(arrays["cache_format"]) != CACHE_FORMAT:
        return False
    installed = qm9pack_version()
    return not installed or str(arrays["qm9pack_version"]) == installed


def load_arrays(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The cached arrays, building the cache first when it is missing or stale.

    Args:
        path: cache file (default :func:`cache_path`).

    Returns:
        ``{name: array}`` as written by :func:`build_cache`, plus ``"offsets"``
        ``[n_molecules + 1]``: molecule ``m`` is atoms ``offsets[m]:offsets[m + 1]``.
    """
    p = Path(path) if path is not None else cache_path()
    arrays = None
    if p.is_file():
        try:
            with np.load(p, allow_pickle=False) as f:
                arrays = {key: f[key] for key in f.files}
        except (OSError, ValueError):  # truncated or foreign file: rebuild it
            arrays = None
    if arrays is None or not _usable(arrays):
        build_cache(p)
        with np.load(p, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    arrays["offsets"] = np.concatenate([[0], np.cumsum(arrays["n_atoms"], dtype=np.int64)])
    return arrays


def qm9_splits(
    n: int = QM9_SIZE, seed: int = 0, sizes: Sequence[int] = (N_TRAIN, N_VALID)
) -> dict[str, np.ndarray]:
    """Molecule indices (rows of the cache) of the train, validation and test sets.

    Args:
        n: molecules in the table (default all 130,831).
        seed: seed of ``numpy.random.default_rng(seed).permutation(n)``.
        sizes: ``(n_train, n_valid)``; the test set is the rest. Default (110,000, 10,000),
            leaving 10,831. EGNN/Cormorant's protocol is ``(100_000, 17_748)``.

    Returns:
        ``{"train", "valid", "test"}``: disjoint int64 arrays in permutation order (so their
        first ``k`` entries are a random subset, nested for growing ``k``).

    Example:
        >>> s = qm9_splits()
        >>> [len(s[k]) for k in ("train", "valid", "test")]
        [110000, 10000, 10831]
    """
    n_train, n_valid = (int(v) for v in sizes)
    if min(n_train, n_valid) < 0 or n_train + n_valid >= n:
        raise ValueError(
            f"sizes {tuple(sizes)} leave no test molecules out of {n}; the standard split of "
            f"all {QM9_SIZE} is ({N_TRAIN}, {N_VALID})"
        )
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return {"train": order[:n_train], "valid": order[n_train : n_train + n_valid],
            "test": order[n_train + n_valid :]}  # fmt: skip


def _check_targets(targets: Sequence[str] | None) -> list[str]:
    if targets is None:
        names = list(TARGETS)
    else:
        names = [targets] if isinstance(targets, str) else list(targets)
    for name in names:
        if name not in TARGETS:
            suggestion = did_you_mean(name, TARGETS)
            hint = f" ({suggestion})" if suggestion else ""
            raise ValueError(f"unknown QM9 target {name!r}{hint}; choose from {list(TARGETS)}")
    return names


def target_values(
    arrays: dict[str, np.ndarray],
    targets: Sequence[str] | None = None,
    *,
    atomization: bool = True,
) -> dict[str, np.ndarray]:
    """Targets of every molecule in the published units of :data:`TARGETS`.

    Args:
        arrays: from :func:`load_arrays`.
        targets: names (default: all of :data:`TARGETS`).
        atomization: subtract the isolated-atom energies from ``U0, U, H, G`` (default True,
            as the published tables do); False gives total energies (about -1.1e7 meV: use
            float64 graphs then, float32 rounds them to ~1 meV).

    Returns:
        ``{name: [n_molecules] float64}``.
    """
    names = _check_targets(targets)
    out = {}
    for name in names:
        column, factor, _ = TARGETS[name]
        raw = arrays[column].astype(np.float64)  # [n_molecules], qm9pack's unit
        if atomization and name in ATOM_REFERENCES_HARTREE:
            ref = np.zeros(10)
            for z, e in ATOM_REFERENCES_HARTREE[name].items():
                ref[z] = e
            per_atom = ref[arrays["z"]]  # [total_atoms]
            raw = raw - np.add.reduceat(per_atom, arrays["offsets"][:-1])  # [n_molecules]
        out[name] = raw * factor
    return out


def qm9(
    split: str = "train",
    targets: Sequence[str] | None = None,
    cutoff: float = 5.0,
    seed: int = 0,
    limit: int | None = None,
    *,
    sizes: Sequence[int] = (N_TRAIN, N_VALID),
    atomization: bool = True,
    cache: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
) -> AtomsDataset:
    """One part of the standard QM9 split as graphs with targets in published units.

    Args:
        split: ``"train"`` (110,000), ``"valid"`` (10,000) or ``"test"`` (10,831).
        targets: names from :data:`TARGETS` (default all): ``U0, U, H, G, homo, lumo, gap,
            zpve`` (meV), ``mu`` (D), ``alpha`` (bohr^3), ``r2`` (bohr^2), ``cv``
            (cal/(mol K)), ``rot_A, rot_B, rot_C`` (GHz).
        cutoff: neighbour cutoff (Angstrom, default 5).
        seed: seed of the split (:func:`qm9_splits`); default 0.
        limit: only the first ``limit`` molecules of the part (a random subset, nested for
            growing ``limit``); default all.
        sizes: ``(n_train, n_valid)`` of the split (default (110,000, 10,000)).
        atomization: ``U0, U, H, G`` minus isolated-atom energies (default True).
        cache: cache file (default :func:`cache_path`); built from qm9pack when missing.
        dtype: floating dtype of the graphs (default torch's default).

    Returns:
        An :class:`equivar.data.AtomsDataset`; each graph carries the targets (shape ``[1]``)
        and ``qm9_id``, the QM9 molecule number.

    Raises:
        ModuleNotFoundError: naming qm9pack, when the cache must be built and it is missing.
        ValueError: unknown split or target, or ``limit`` larger than the part.

    Example:
        >>> train = qm9("train", targets=["U0", "gap"], limit=1000)  # doctest: +SKIP
        >>> float(train[0].gap)  # meV  # doctest: +SKIP
    """
    from ase import Atoms

    from equivar.data.dataset import AtomsDataset

    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    names = _check_targets(targets)
    arrays = load_arrays(cache)
    n = len(arrays["n_atoms"])
    rows = qm9_splits(n, seed, sizes)[split]
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
            raise ValueError(f"limit must be None or an integer >= 0, got {limit!r}")
        if limit > len(rows):
            raise ValueError(f"limit {limit} exceeds the {len(rows)} molecules of split {split!r}")
        rows = rows[:limit]
    values = target_values(arrays, names, atomization=atomization)
    offsets, z, pos = arrays["offsets"], arrays["z"], arrays["pos"]
    frames = []
    for m in rows.tolist():
        a, b = offsets[m], offsets[m + 1]
        atoms = Atoms(numbers=z[a:b].astype(np.int64), positions=pos[a:b], pbc=False)
        atoms.info["qm9_id"] = int(arrays["qm9_index"][m])
        atoms.info.update({name: float(values[name][m]) for name in names})
        frames.append(atoms)
    return AtomsDataset(frames, cutoff, dtype=dtype)
