"""Where structures keep their labels: energy, forces, stress and virial under keys of their own.

MACE and NequIP users store reference labels under names of their own (``REF_energy``,
``DFT_forces``, ``REF_stress``, ``REF_virial``), beside or instead of the names that ASE's extxyz
reader puts on a ``SinglePointCalculator`` (``energy``, ``forces``, ``stress``). A
:class:`LabelKeys` says which key holds each label; the graph builders (:func:`~equivar.data.read`,
:func:`~equivar.data.from_ase`, :class:`~equivar.data.AtomsDataset`,
:class:`~equivar.data.ShardedDataset`) store it under equivar's name (:mod:`equivar.keys`) and
drop the key it came from. A label is looked up in

* energy, stress, virial (per frame): ``atoms.info[key]``, else the calculator's ``results[key]``;
* forces (per atom): ``atoms.arrays[key]``, else the calculator's ``results[key]``;
* equivar ``.npz`` files and HDF5 shards: the array / field named ``key`` (``.npz`` arrays become
  ``info``/``arrays`` entries, so the rules above apply; MD17/sGDML's ``E``/``F`` arrive as
  ``energy``/``forces``).

A key left at its default name is optional, as before: unlabelled structures are still read (for
prediction or simulation). A key given another name is required in every structure; a structure
without it is a ``ValueError`` naming the key, the keys that are there and the closest of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from equivar import keys as K
from equivar._suggest import did_you_mean

if TYPE_CHECKING:
    import ase

__all__ = ["LabelKeys", "check_atoms_labels", "missing_label"]

#: equivar's name of each label -> the LabelKeys field naming its key.
KEY_FIELDS = {K.ENERGY: "energy_key", K.FORCES: "forces_key", K.STRESS: "stress_key",
              K.VIRIAL: "virial_key"}  # fmt: skip
#: Arrays every ``ase.Atoms`` has: not worth listing in an error.
_ALWAYS_THERE = {"numbers", "positions"}


@dataclass(frozen=True)
class LabelKeys:
    """The keys under which structures keep their energy, forces, stress and virial (the
    names of MACE's ``energy_key``/``forces_key``/``stress_key``/``virials_key``).

    Args:
        energy_key: total energy (eV), per frame. Default ``"energy"``.
        forces_key: forces (eV/Angstrom), per atom ``[n_nodes, 3]``. Default ``"forces"``.
        stress_key: stress (eV/Angstrom^3, ASE's sign), per frame: 3x3, 6 Voigt values
            ``(xx, yy, zz, yz, xz, xy)`` or 9 values. Default ``"stress"``.
        virial_key: virial ``-dE/d(strain)`` (eV), per frame, shaped like the stress.
            Default ``"virial"``.

    Raises:
        ValueError: a key that is not a non-empty string, or two labels given the same key.

    Example:
        >>> keys = LabelKeys(energy_key="REF_energy", forces_key="REF_forces")
        >>> keys.renamed()
        {'energy': 'REF_energy', 'forces': 'REF_forces'}
        >>> str(keys)
        "energy_key='REF_energy', forces_key='REF_forces'"
    """

    energy_key: str = K.ENERGY
    forces_key: str = K.FORCES
    stress_key: str = K.STRESS
    virial_key: str = K.VIRIAL

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name in KEY_FIELDS.values():
            key = getattr(self, name)
            if not isinstance(key, str) or not key.strip():
                raise ValueError(f"{name} must be a non-empty string, got {key!r}")
            if key in seen:
                raise ValueError(f"{seen[key]} and {name} both name {key!r}; each label needs "
                                 "a key of its own")
            seen[key] = name

    def renamed(self) -> dict[str, str]:
        """equivar name -> key, for the labels whose key is not the default name."""
        pairs = ((target, getattr(self, name)) for target, name in KEY_FIELDS.items())
        return {target: key for target, key in pairs if key != target}

    def as_dict(self) -> dict[str, str]:
        """``{"energy_key": ..., "forces_key": ..., ...}``: the keyword arguments of
        :func:`equivar.data.read`."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        renamed = self.renamed()
        if not renamed:
            return "the default label keys"
        return ", ".join(f"{KEY_FIELDS[t]}={k!r}" for t, k in renamed.items())


def missing_label(target: str, key: str, present: dict[str, list[str]]) -> str:
    """The message for a structure without the label ``target`` under ``key``: the keys that
    are there (``present``: what -> names, e.g. ``{"atoms.info keys": [...]}``) and the closest
    of them."""
    listing = ", ".join(f"{what} {sorted(names)}" for what, names in present.items())
    hint = did_you_mean(key, [name for names in present.values() for name in names])
    return (f"no {target} label {key!r} ({KEY_FIELDS[target]}); there are {listing}"
            + (f"; {hint}" if hint else ""))


def check_atoms_labels(atoms: ase.Atoms, labels: LabelKeys | None) -> None:
    """Check that ``atoms`` carries every label whose key is not the default name, in the right
    place (per frame: ``info`` or the calculator; per atom: ``arrays`` or the calculator).

    Raises:
        ValueError: naming the missing label and key, the keys ``atoms`` has and the closest.
    """
    renamed = {} if labels is None else labels.renamed()
    if not renamed:
        return
    results = getattr(atoms.calc, "results", None) or {}
    for target, key in renamed.items():
        per_atom = K.FIELDS[target].level == "node"
        home, other = (atoms.arrays, atoms.info) if per_atom else (atoms.info, atoms.arrays)
        if key in home or results.get(key) is not None:
            continue
        if key in other:
            where = "atoms.info (one value per frame)" if per_atom else "atoms.arrays (per atom)"
            wanted = ("a per-atom value (atoms.arrays or the calculator's results)" if per_atom
                      else "a per-frame value (atoms.info or the calculator's results)")
            raise ValueError(f"the {target} label {key!r} is in {where}; {KEY_FIELDS[target]} "
                             f"must name {wanted}")
        raise ValueError(missing_label(target, key, {
            "atoms.info keys": list(atoms.info),
            "atoms.arrays keys": [k for k in atoms.arrays if k not in _ALWAYS_THERE],
            "calculator results": [k for k, v in results.items() if v is not None],
        }))
