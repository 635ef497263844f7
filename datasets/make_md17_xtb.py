"""The ten MD17 molecules by GFN2-xTB Langevin MD at 500 K (tblite), one compressed npz each.

Protocol, per molecule (``--frames`` and the other flags set any size):

1. Start geometry, made offline (no network, no SMILES toolkit): ``ase.build.molecule`` for
   benzene (G2 ``C6H6``) and ethanol (G2 ``CH3CH2OH``); the first monomer (atoms 0-11) of the
   S22 ``Uracil_dimer_h-bonded`` complex in ``ase.collections.s22`` for uracil; the other seven
   (aspirin, azobenzene, malonaldehyde, naphthalene, paracetamol, salicylic acid, toluene) from
   the hand-written Z-matrices below, with textbook bond lengths and 109.5/120 degree angles in
   the conformer named in each builder's docstring.
2. Relaxed with GFN2-xTB (ASE ``BFGS``, fmax 0.01 eV/Angstrom, at most 500 steps). The script
   then checks that the bonds of the relaxed structure (pairs closer than 1.2 x the sum of ASE's
   covalent radii) are exactly the bonds the builder intended and that the formula is MD17's.
3. Langevin MD at 500 K (the shared :func:`langevin` below, also used by ``make_ethanol_xtb.py``):
   Maxwell-Boltzmann momenta, time step 0.5 fs, friction 0.01 / fs, centre of mass held by
   ``FixCom``, the generator ``numpy.random.default_rng([seed, k])`` (k = the molecule's index in
   ``MOLECULES``) drawing momenta and thermostat noise. ``--equil`` steps are discarded, then one
   frame is stored every ``--interval`` steps.
4. Each stored geometry is rounded to a grid of 2^-12 Angstrom (exact in the float32 it is
   stored in) and labelled by a fresh GFN2-xTB single point at exactly those positions (new
   calculator, SAD guess, nothing reused from the MD): energy (eV, stored as float64) and forces
   (eV/Angstrom, rounded to 2^-14 and stored as float32).

Output: ``OUT_DIR/<molecule>.npz`` in the MD17/sGDML layout that ``equivar.data.read`` reads:
``R [F, N, 3]`` float32 Angstrom, ``z [N]`` int64, ``E [F]`` float64 eV, ``F [F, N, 3]`` float32
eV/Angstrom (units are eV here, **not** MD17's kcal/mol), plus ``md_step [F]`` int64 (steps after
equilibration), ``time_fs [F]`` float64, ``name``, ``method``, ``formula`` and ``protocol``
(strings). Written as a compressed npz with fixed zip timestamps (same arrays, same bytes) to
a temporary name, then renamed.

OpenMP threads default to 1 (as in ``make_ethanol_xtb.py``): reproducible on one machine, and as
fast as 2 for these sizes; ``--jobs`` runs molecules in parallel processes instead.

Regenerate (from the repository root):  python3 datasets/make_md17_xtb.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before tblite loads its OpenMP runtime

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms, units  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from ase.constraints import FixCom  # noqa: E402
from ase.data import covalent_radii  # noqa: E402
from ase.md.langevin import Langevin  # noqa: E402
from ase.md.velocitydistribution import thermalize_momenta  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "md17_xtb"
METHOD = "GFN2-xTB"


# ----------------------------------------------------------------- GFN2-xTB and the dynamics
# (shared with make_ethanol_xtb.py)


def xtb_calculator():
    """A new tblite GFN2-xTB ASE calculator with tblite's defaults."""
    from tblite.ase import TBLite

    return TBLite(method=METHOD, verbosity=0)


def label(symbols, positions: np.ndarray) -> Atoms:
    """A fresh GFN2-xTB single point; the result is stored on a SinglePointCalculator."""
    atoms = Atoms(symbols=symbols, positions=positions, pbc=False)
    atoms.calc = xtb_calculator()
    energy = atoms.get_potential_energy()  # eV
    forces = atoms.get_forces()  # eV / Angstrom
    dipole = atoms.get_dipole_moment()  # e * Angstrom (tblite: e*bohr times ase.units.Bohr)
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, dipole=dipole)
    return atoms


def langevin(
    atoms: Atoms, temperature_K: float, timestep_fs: float, friction_per_fs: float, rng
) -> Langevin:
    """Langevin dynamics of a molecule with Maxwell-Boltzmann momenta drawn from ``rng``.

    The centre of mass is held by ``FixCom`` with ``fixcm=False``: ASE's own ``fixcm=True`` ran a
    9-atom molecule ~30% too hot. ``atoms`` must carry its calculator.
    """
    atoms.set_constraint(FixCom())
    thermalize_momenta(atoms, temperature_K, rng=rng)
    return Langevin(
        atoms,
        timestep_fs * units.fs,
        temperature_K=temperature_K,
        friction=friction_per_fs / units.fs,
        fixcm=False,
        rng=rng,
    )


def sample(
    dyn, atoms: Atoms, n_frames: int, interval: int, store: Callable[[np.ndarray], np.ndarray]
) -> Iterator[tuple[Atoms, float, float]]:
    """Run ``interval`` steps, then label the geometry ``store(positions)``; ``n_frames`` times.

    Yields:
        ``(frame, kinetic temperature in K, seconds spent labelling)``, with
        ``frame.info["md_step"]`` the steps since the first call.
    """
    symbols = atoms.get_chemical_symbols()
    for k in range(1, n_frames + 1):
        dyn.run(interval)
        temperature = atoms.get_temperature()
        t0 = time.perf_counter()
        frame = label(symbols, store(atoms.positions))
        seconds = time.perf_counter() - t0
        frame.info["md_step"] = k * interval
        yield frame, temperature, seconds


# ----------------------------------------------------------------- starting structures


def zmatrix(rows: list[tuple], closures: tuple[tuple[int, int], ...] = ()) -> Atoms:
    """Cartesian coordinates from a Z-matrix.

    Row ``k`` is ``(symbol, a, r, b, angle, c, dihedral)``: atom k sits at distance ``r``
    (Angstrom) from atom ``a``, makes the angle ``k-a-b`` (degrees) and the dihedral ``k-a-b-c``.
    Row 0 is ``(symbol,)``, row 1 ``(symbol, a, r)``, row 2 ``(symbol, a, r, b, angle)``.
    The intended bonds (each row's ``k-a`` plus the ring ``closures``) go to ``info["bonds"]``.
    """
    pos: list[np.ndarray] = []
    for k, row in enumerate(rows):
        if k == 0:
            pos.append(np.zeros(3))
        elif k == 1:
            pos.append(pos[row[1]] + np.array([row[2], 0.0, 0.0]))
        else:
            a, r, b, angle = row[1], row[2], row[3], math.radians(row[4])
            # row 2 has no dihedral reference: a point off the a-b axis fixes the xy plane
            ref = pos[row[5]] if len(row) > 5 else pos[b] + np.array([0.0, 1.0, 0.0])
            dihedral = math.radians(row[6]) if len(row) > 5 else 0.0
            bc = pos[a] - pos[b]
            bc /= np.linalg.norm(bc)
            n = np.cross(pos[b] - ref, bc)
            n /= np.linalg.norm(n)
            m = np.cross(n, bc)
            local = r * np.array(
                [-math.cos(angle), math.sin(angle) * math.cos(dihedral),
                 math.sin(angle) * math.sin(dihedral)]
            )  # fmt: skip
            pos.append(pos[a] + local[0] * bc + local[1] * m + local[2] * n)
    atoms = Atoms([row[0] for row in rows], positions=np.array(pos))
    intended = {(min(k, row[1]), max(k, row[1])) for k, row in enumerate(rows) if k}
    atoms.info["bonds"] = sorted(intended | {(min(p), max(p)) for p in closures})
    return atoms


#: the bond that closes the six-ring of :func:`_benzene_ring`
RING = ((0, 5),)


def _benzene_ring(cc: float = 1.39) -> list[tuple]:
    """Rows of a regular six-ring C0..C5 in the xy plane (C5 closes onto C0)."""
    rows: list[tuple] = [("C",), ("C", 0, cc), ("C", 1, cc, 0, 120.0)]
    rows += [("C", k - 1, cc, k - 2, 120.0, k - 3, 0.0) for k in range(3, 6)]
    return rows


def _ring_h(atom: int, n1: int, n2: int, r: float = 1.08, symbol: str = "H") -> tuple:
    """A substituent on ring atom ``atom``, in the ring plane, pointing out of the ring;
    ``n1`` is a ring neighbour of ``atom`` and ``n2`` the next ring atom after ``n1``."""
    return (symbol, atom, r, n1, 120.0, n2, 180.0)


def _methyl(c: int, a: int, b: int, start: float = 60.0) -> list[tuple]:
    """Three staggered H on the sp3 carbon ``c`` bonded to ``a`` (``b`` bonded to ``a``)."""
    return [("H", c, 1.09, a, 109.47, b, start + d) for d in (0.0, 120.0, 240.0)]


def toluene() -> Atoms:
    """Methylbenzene: ring C0..C5, methyl carbon 6 on C0 (one C-H in the ring plane)."""
    rows = _benzene_ring() + [_ring_h(0, 1, 2, 1.50, "C")]
    rows += _methyl(6, 0, 1, start=0.0)
    rows += [_ring_h(1, 2, 3), _ring_h(2, 3, 4), _ring_h(3, 2, 1), _ring_h(4, 3, 2),
             _ring_h(5, 4, 3)]  # fmt: skip
    return zmatrix(rows, RING)


def naphthalene() -> Atoms:
    """Two fused six-rings sharing the C4-C5 bond (C6..C9 close the second ring onto C4)."""
    rows = _benzene_ring(1.40)
    rows += [("C", 5, 1.40, 4, 120.0, 3, 180.0), ("C", 6, 1.40, 5, 120.0, 4, 0.0),
             ("C", 7, 1.40, 6, 120.0, 5, 0.0), ("C", 8, 1.40, 7, 120.0, 6, 0.0)]  # fmt: skip
    rows += [_ring_h(0, 1, 2), _ring_h(1, 2, 3), _ring_h(2, 1, 0), _ring_h(3, 2, 1),
             _ring_h(6, 7, 8), _ring_h(7, 8, 9), _ring_h(8, 7, 6), _ring_h(9, 8, 7)]  # fmt: skip
    return zmatrix(rows, (*RING, (4, 9)))


def malonaldehyde() -> Atoms:
    """3-hydroxyprop-2-enal, the enol form of MD17: O=CH-CH=CH-OH, planar, with the
    intramolecular O-H...O=C hydrogen bond (both oxygens on the same side)."""
    rows = [
        ("C",),  # 0: central CH
        ("C", 0, 1.42),  # 1: C(H)=O
        ("C", 0, 1.37, 1, 120.0),  # 2: C(H)-OH
        ("O", 1, 1.24, 0, 123.0, 2, 0.0),  # 3: carbonyl O
        ("O", 2, 1.33, 0, 124.0, 1, 0.0),  # 4: hydroxyl O
        ("H", 4, 0.99, 2, 106.0, 0, 0.0),  # 5: hydroxyl H, towards O3
        ("H", 1, 1.10, 0, 118.0, 2, 180.0),
        ("H", 0, 1.08, 1, 118.0, 3, 180.0),
        ("H", 2, 1.08, 0, 120.0, 1, 180.0),
    ]
    return zmatrix(rows)


def salicylic_acid() -> Atoms:
    """2-hydroxybenzoic acid: COOH on C0, OH on C1; the phenol H bonds to the carbonyl O, the
    acid H is syn to its carbonyl O; all atoms in the ring plane."""
    rows = _benzene_ring()
    rows += [
        ("C", 0, 1.48, 1, 120.0, 2, 180.0),  # 6: carboxyl C
        ("O", 6, 1.23, 0, 122.0, 1, 0.0),  # 7: carbonyl O, on the C1 side
        ("O", 6, 1.34, 0, 115.0, 1, 180.0),  # 8: acid O
        ("H", 8, 0.97, 6, 107.0, 0, 180.0),  # 9: acid H, syn to O7
        ("O", 1, 1.36, 0, 120.0, 5, 180.0),  # 10: phenol O
        ("H", 10, 0.98, 1, 108.0, 0, 0.0),  # 11: phenol H, towards O7
    ]
    rows += [_ring_h(2, 3, 4), _ring_h(3, 2, 1), _ring_h(4, 3, 2), _ring_h(5, 4, 3)]
    return zmatrix(rows, RING)


def aspirin() -> Atoms:
    """2-acetoxybenzoic acid: COOH on C0 (in the ring plane), acetoxy O-C(=O)-CH3 on C1 with its
    ester plane turned ~90 degrees out of the ring plane (as in the crystal), Z ester."""
    rows = _benzene_ring()
    rows += [
        ("C", 0, 1.48, 1, 120.0, 2, 180.0),  # 6: carboxyl C
        ("O", 6, 1.22, 0, 123.0, 1, 180.0),  # 7: carbonyl O, away from the ester
        ("O", 6, 1.35, 0, 114.0, 1, 0.0),  # 8: acid O
        ("H", 8, 0.97, 6, 107.0, 0, 180.0),  # 9: acid H, syn to O7
        ("O", 1, 1.40, 0, 120.0, 5, 180.0),  # 10: ester O on the ring
        ("C", 10, 1.36, 1, 118.0, 0, 90.0),  # 11: acyl C, out of the ring plane
        ("O", 11, 1.20, 10, 123.0, 1, 0.0),  # 12: acyl O (Z ester)
        ("C", 11, 1.50, 10, 110.0, 1, 180.0),  # 13: methyl C
    ]
    rows += _methyl(13, 11, 10)
    rows += [_ring_h(2, 3, 4), _ring_h(3, 2, 1), _ring_h(4, 3, 2), _ring_h(5, 4, 3)]
    return zmatrix(rows, RING)


def paracetamol() -> Atoms:
    """N-(4-hydroxyphenyl)acetamide: NH-C(=O)-CH3 on C0, OH on C3 (para); trans amide (N-H
    anti to C=O), all heavy atoms in the ring plane."""
    rows = _benzene_ring()
    rows += [
        ("N", 0, 1.41, 1, 120.0, 2, 180.0),  # 6
        ("H", 6, 1.01, 0, 116.0, 1, 0.0),  # 7: N-H
        ("C", 6, 1.36, 0, 128.0, 1, 180.0),  # 8: amide C
        ("O", 8, 1.23, 6, 123.0, 0, 0.0),  # 9: amide O, cis to C0
        ("C", 8, 1.51, 6, 115.0, 0, 180.0),  # 10: methyl C
        ("O", 3, 1.36, 2, 120.0, 1, 180.0),  # 11: phenol O
        ("H", 11, 0.97, 3, 109.0, 2, 0.0),  # 12: phenol H
    ]
    rows += _methyl(10, 8, 6)
    rows += [_ring_h(1, 2, 3), _ring_h(2, 1, 0), _ring_h(4, 5, 0), _ring_h(5, 4, 3)]
    return zmatrix(rows, RING)


def azobenzene() -> Atoms:
    """trans-azobenzene Ph-N=N-Ph, planar (C2h): ring A C0..C5, N6=N7, ring B C8..C13."""
    rows = _benzene_ring()
    rows += [
        ("N", 0, 1.42, 1, 120.0, 2, 180.0),  # 6
        ("N", 6, 1.25, 0, 114.0, 1, 180.0),  # 7: trans across C0-N6
        ("C", 7, 1.42, 6, 114.0, 0, 180.0),  # 8: ipso C of ring B, trans azo
        ("C", 8, 1.39, 7, 120.0, 6, 180.0),  # 9
        ("C", 9, 1.39, 8, 120.0, 7, 180.0),  # 10
        ("C", 10, 1.39, 9, 120.0, 8, 0.0),  # 11
        ("C", 11, 1.39, 10, 120.0, 9, 0.0),  # 12
        ("C", 12, 1.39, 11, 120.0, 10, 0.0),  # 13
    ]
    rows += [_ring_h(1, 2, 3), _ring_h(2, 3, 4), _ring_h(3, 2, 1), _ring_h(4, 3, 2),
             _ring_h(5, 4, 3)]  # fmt: skip
    rows += [_ring_h(9, 10, 11), _ring_h(10, 11, 12), _ring_h(11, 10, 9), _ring_h(12, 11, 10),
             _ring_h(13, 12, 11)]  # fmt: skip
    return zmatrix(rows, (*RING, (8, 13)))


def benzene() -> Atoms:
    from ase.build import molecule

    return molecule("C6H6")


def ethanol() -> Atoms:
    from ase.build import molecule

    return molecule("CH3CH2OH")


def uracil() -> Atoms:
    from ase.collections import s22

    return s22["Uracil_dimer_h-bonded"][:12]


#: name -> (MD17 formula, builder). The order fixes each molecule's random stream.
MOLECULES: dict[str, tuple[str, Callable[[], Atoms]]] = {
    "aspirin": ("C9H8O4", aspirin),
    "azobenzene": ("C12H10N2", azobenzene),
    "benzene": ("C6H6", benzene),
    "ethanol": ("C2H6O", ethanol),
    "malonaldehyde": ("C3H4O2", malonaldehyde),
    "naphthalene": ("C10H8", naphthalene),
    "paracetamol": ("C8H9NO2", paracetamol),
    "salicylic_acid": ("C7H6O3", salicylic_acid),
    "toluene": ("C7H8", toluene),
    "uracil": ("C4H4N2O2", uracil),
}


def bonds(atoms: Atoms, scale: float = 1.2) -> set[tuple[int, int]]:
    """Pairs closer than ``scale`` x the sum of the covalent radii."""
    d = atoms.get_all_distances()
    r = covalent_radii[atoms.numbers]
    close = d < scale * (r[:, None] + r[None, :])
    return {(i, j) for i, j in zip(*np.nonzero(close), strict=True) if i < j}


def start_structure(name: str) -> Atoms:
    """The unrelaxed starting geometry of ``name``, checked against its MD17 formula."""
    formula, build = MOLECULES[name]
    atoms = build()
    atoms.pbc = False
    if atoms.get_chemical_formula(mode="hill") != formula:
        raise RuntimeError(f"{name}: built {atoms.get_chemical_formula('hill')}, want {formula}")
    intended = {tuple(b) for b in atoms.info.pop("bonds", bonds(atoms))}
    if bonds(atoms) != intended:
        raise RuntimeError(f"{name}: start bonds {sorted(bonds(atoms) ^ intended)} differ")
    return atoms


def relax(atoms: Atoms, fmax: float = 0.01, steps: int = 500) -> Atoms:
    """GFN2-xTB relaxation (ASE BFGS); the bond graph (checked against the intended one by
    :func:`start_structure`) must survive it unchanged."""
    from ase.optimize import BFGS

    before = bonds(atoms)
    atoms = atoms.copy()
    atoms.calc = xtb_calculator()
    opt = BFGS(atoms, logfile=None)
    if not opt.run(fmax=fmax, steps=steps):
        raise RuntimeError(f"relaxation did not reach fmax {fmax} in {steps} steps")
    after = bonds(atoms)
    if after != before:
        raise RuntimeError(
            f"bonds changed on relaxation: lost {before - after}, got {after - before}"
        )
    atoms.info["relax_steps"] = opt.get_number_of_steps()
    return atoms


#: stored positions lie on a grid of 2^-12 Angstrom (2.4e-4), exact in float32; the labels are
#: computed at exactly these positions. Forces are rounded to 2^-14 eV/Angstrom (6.1e-5). Both
#: make the float32 arrays compress by a quarter; neither matters next to a model's errors.
POSITION_QUANTUM = 2.0**-12
FORCE_QUANTUM = 2.0**-14


def quantise(x: np.ndarray, quantum: float) -> np.ndarray:
    """``x`` rounded to a multiple of ``quantum`` (a power of two: exact in float32)."""
    return np.round(np.asarray(x, dtype=np.float64) / quantum) * quantum


def as_stored(positions: np.ndarray) -> np.ndarray:
    """Positions exactly as stored (float64 values of the float32 array written)."""
    return quantise(positions, POSITION_QUANTUM)


def generate(name: str, args: argparse.Namespace) -> dict:
    """Relax, equilibrate and sample one molecule; returns the arrays of its npz and stats."""
    t0 = time.perf_counter()
    atoms = relax(start_structure(name))
    t_relax = time.perf_counter() - t0
    rng = np.random.default_rng([args.seed, list(MOLECULES).index(name)])
    atoms.calc = xtb_calculator()
    dyn = langevin(atoms, args.temperature, args.timestep, args.friction, rng)
    dyn.run(args.equil)
    frames, temperatures, t_label = [], [], 0.0
    for frame, temperature, seconds in sample(dyn, atoms, args.frames, args.interval, as_stored):
        frames.append(frame)
        temperatures.append(temperature)
        t_label += seconds
    n = len(atoms)
    steps = np.array([f.info["md_step"] for f in frames], dtype=np.int64)
    protocol = (
        f"relaxed (BFGS fmax 0.01 eV/A, {atoms.info.get('relax_steps', '?')} steps), Langevin "
        f"{args.temperature:g} K, dt {args.timestep:g} fs, friction {args.friction:g}/fs, FixCom, "
        f"seed [{args.seed}, {list(MOLECULES).index(name)}], {args.equil} equilibration steps, "
        f"one frame every {args.interval} steps; fresh single-point labels at the stored positions "
        f"(multiples of 2^-12 A); forces rounded to 2^-14 eV/A"
    )
    arrays = {
        "R": np.stack([f.positions for f in frames]).astype(np.float32),  # [F, N, 3]
        "z": atoms.numbers.astype(np.int64),  # [N]
        "E": np.array([f.get_potential_energy() for f in frames], dtype=np.float64),  # [F]
        "F": quantise(np.stack([f.get_forces() for f in frames]), FORCE_QUANTUM).astype(
            np.float32
        ),  # [F, N, 3]
        "md_step": steps,
        "time_fs": steps * args.timestep,
        "name": np.array(name),
        "method": np.array(f"{METHOD} (tblite {importlib.metadata.version('tblite')})"),
        "formula": np.array(MOLECULES[name][0]),
        "protocol": np.array(protocol),
    }
    assert arrays["R"].shape == (args.frames, n, 3)
    t_total = time.perf_counter() - t0
    stats = {
        "name": name,
        "atoms": n,
        "seconds": t_total,
        "relax_s": t_relax,
        "label_ms": 1e3 * t_label / max(len(frames), 1),
        "steps_per_s": (args.equil + args.frames * args.interval) / (t_total - t_relax - t_label),
        "T_mean": float(np.mean(temperatures)),
        "T_sd": float(np.std(temperatures)),
        "force_rms": float(np.sqrt(np.mean(arrays["F"].astype(np.float64) ** 2))),
    }
    return {"arrays": arrays, "stats": stats}


def write_npz(path: Path, arrays: dict, metadata: dict | None = None) -> None:
    """A compressed ``.npz`` (what ``numpy.savez_compressed`` writes, ``numpy.load`` reads) with
    fixed zip timestamps, so the same arrays give the same bytes, and ``metadata`` (if given) as
    JSON in the zip comment; written to a temporary file in the same folder, then renamed. Also
    used by make_ethanol_dft.py and make_emt_metals.py."""
    import json
    import zipfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
            for key, value in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
            if metadata is not None:
                archive.comment = json.dumps(metadata, sort_keys=True).encode()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _run_one(name: str, args: argparse.Namespace) -> dict:
    result = generate(name, args)
    write_npz(args.out_dir / f"{name}.npz", result["arrays"])
    return result["stats"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "molecules",
        nargs="*",
        metavar="MOLECULE",
        help=f"default: all ten ({', '.join(MOLECULES)})",
    )
    parser.add_argument("--frames", type=int, default=1500, help="frames per molecule")
    parser.add_argument("--interval", type=int, default=10, help="MD steps between frames")
    parser.add_argument("--equil", type=int, default=1000, help="equilibration steps (discarded)")
    parser.add_argument("--seed", type=int, default=0, help="seed of velocities and thermostat")
    parser.add_argument("--temperature", type=float, default=500.0, help="thermostat, K")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--jobs", type=int, default=1, help="molecules run in parallel")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="build and relax the start structures only; write nothing",
    )
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(args.molecules or MOLECULES))
    unknown = [n for n in names if n not in MOLECULES]
    if unknown:
        parser.error(f"unknown molecule(s) {unknown}; choose from {list(MOLECULES)}")

    print(
        f"tblite {importlib.metadata.version('tblite')}, ase {importlib.metadata.version('ase')}"
        f", numpy {np.__version__}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    )
    if args.dry_run:
        for name in names:
            t0 = time.perf_counter()
            atoms = relax(start_structure(name))
            atoms.calc = xtb_calculator()
            t1 = time.perf_counter()
            for _ in range(20):
                atoms.positions += 1e-3
                atoms.get_forces()
            ms = 1e3 * (time.perf_counter() - t1) / 20
            print(
                f"{name:15s} {len(atoms):3d} atoms  relaxed in {atoms.info['relax_steps']:3d} "
                f"steps ({t1 - t0:.1f} s); {ms:.2f} ms per energy+forces",
                flush=True,
            )
        return
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {name: pool.submit(_run_one, name, args) for name in names}
        for name, future in futures.items():
            s = future.result()
            size = (args.out_dir / f"{name}.npz").stat().st_size
            print(
                f"{name:15s} {s['atoms']:3d} atoms  {args.frames} frames  {size:9,d} bytes  "
                f"{s['seconds']:6.0f} s (relax {s['relax_s']:.0f} s, MD {s['steps_per_s']:.0f} "
                f"steps/s, labels {s['label_ms']:.1f} ms/frame)  T {s['T_mean']:.0f} +- "
                f"{s['T_sd']:.0f} K  force RMS {s['force_rms']:.2f} eV/A",
                flush=True,
            )


if __name__ == "__main__":
    main()
