"""Atoms and molecules for VMC: nuclear charges, positions (bohr), electron counts per spin.

Electrons are always ordered spin-up first: ``r[:, :n_up]`` are up, ``r[:, n_up:]`` down, and
``n_up >= n_down`` by convention (``spin = n_up - n_down >= 0``).

A system is what a wavefunction is built for (``build("wavefunction", system=...)``) as well as
what VMC samples, so it lives here, below both; :mod:`equivar.qmc` re-exports every name
(``equivar.qmc.Molecule``, ``equivar.qmc.atom``, ...).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from ase.data import atomic_numbers as _ATOMIC_NUMBERS
from ase.data import chemical_symbols as _SYMBOLS

from equivar._suggest import did_you_mean

__all__ = ["GROUND_STATE_SPIN", "NAMED_SYSTEMS", "Molecule", "atom", "get_system"]

#: unpaired electrons (2S) of the ground state of neutral atoms H..Kr (Hund's rules; Cr and Cu
#: take the 3d^5 4s^1 and 3d^10 4s^1 configurations)
GROUND_STATE_SPIN: dict[int, int] = dict(enumerate(
    [1, 0,                                                          # H  He
     1, 0, 1, 2, 3, 2, 1, 0,                                        # Li .. Ne
     1, 0, 1, 2, 3, 2, 1, 0,                                        # Na .. Ar
     1, 0, 1, 2, 3, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0],         # K  .. Kr
    start=1))  # fmt: skip


def _atomic_number(z: int | str) -> int:
    if isinstance(z, str):
        if z not in _ATOMIC_NUMBERS or z == "X":
            close = [s for s in _SYMBOLS[1:] if s.lower() == z.lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown element {z!r}{hint}")
        return _ATOMIC_NUMBERS[z]
    if isinstance(z, float) and not z.is_integer():
        raise ValueError(f"nuclear charges must be whole atomic numbers, got {z}")
    if not 1 <= int(z) <= 118:
        raise ValueError(f"unknown element: atomic number {z} is outside 1..118")
    return int(z)


@dataclass(frozen=True)
class Molecule:
    """Clamped nuclei and the number of electrons of each spin (atomic units).

    Args:
        charges: atomic numbers or element symbols, one per nucleus.
        positions: nuclear positions in bohr, ``[n_nuclei, 3]``.
        charge: net charge (default 0): ``n_elec = sum(charges) - charge``.
        spin: ``n_up - n_down`` (default: 0 for an even electron count, 1 for an odd one; for a
            single atom :func:`atom` picks the Hund's-rule ground state instead).
        name: a label for tables and checkpoints (default: the formula).

    Raises:
        ValueError: mismatched lengths, non-finite or coincident positions, an unknown element,
            no electrons, or a spin inconsistent with the electron count.

    Example:
        >>> lih = Molecule(["Li", "H"], [[0, 0, 0], [0, 0, 3.015]])
        >>> lih.n_elec, lih.n_up, lih.n_down
        (4, 2, 2)
    """

    charges: tuple[int, ...]
    positions: tuple[tuple[float, float, float], ...]
    charge: int = 0
    spin: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        charges = tuple(_atomic_number(z) for z in self.charges)
        if not charges:
            raise ValueError("a Molecule needs at least one nucleus")
        try:
            pos = tuple(tuple(float(x) for x in p) for p in self.positions)
        except TypeError as err:
            raise ValueError(f"positions must be [n_nuclei, 3] numbers (bohr): {err}") from None
        if len(pos) != len(charges) or any(len(p) != 3 for p in pos):
            raise ValueError(f"positions must have shape [n_nuclei={len(charges)}, 3], got "
                             f"{[len(p) for p in pos]} coordinates per nucleus")
        if not all(math.isfinite(x) for p in pos for x in p):
            raise ValueError(f"positions must be finite, got {pos}")
        for i in range(len(pos)):
            for j in range(i):
                if math.dist(pos[i], pos[j]) < 1e-6:
                    raise ValueError(f"nuclei {j} and {i} coincide at {pos[i]}")
        if int(self.charge) != self.charge:
            raise ValueError(f"charge must be an integer, got {self.charge}")
        n_elec = sum(charges) - int(self.charge)
        if n_elec < 1:
            raise ValueError(f"charge {self.charge} leaves {n_elec} electrons; need at least 1")
        spin = n_elec % 2 if self.spin is None else self.spin
        if int(spin) != spin or spin < 0 or spin > n_elec or (n_elec - spin) % 2:
            raise ValueError(f"spin (n_up - n_down) = {self.spin} is inconsistent with "
                             f"{n_elec} electrons: it must be one of "
                             f"{list(range(n_elec % 2, n_elec + 1, 2))}")
        name = self.name or "".join(_SYMBOLS[z] for z in charges)
        for field, value in [("charges", charges), ("positions", pos), ("charge", int(self.charge)),
                             ("spin", int(spin)), ("name", name)]:
            object.__setattr__(self, field, value)

    # --- counts ----------------------------------------------------------------------------------
    @property
    def n_nuclei(self) -> int:
        return len(self.charges)

    @property
    def n_elec(self) -> int:
        return sum(self.charges) - self.charge

    @property
    def n_up(self) -> int:
        return (self.n_elec + self.spin) // 2

    @property
    def n_down(self) -> int:
        return (self.n_elec - self.spin) // 2

    @property
    def nuclear_repulsion(self) -> float:
        """``sum_{I<J} Z_I Z_J / |R_I - R_J|`` (hartree)."""
        z, pos = self.charges, self.positions
        return sum(z[i] * z[j] / math.dist(pos[i], pos[j])
                   for i in range(self.n_nuclei) for j in range(i))

    # --- conversions -----------------------------------------------------------------------------
    def tensors(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(charges [n_nuclei], positions [n_nuclei, 3])`` as tensors (cached per device)."""
        return _tensors(self, torch.device(device or "cpu"), dtype or torch.get_default_dtype())

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for configs and checkpoints); :meth:`from_dict` inverts it."""
        return {"charges": list(self.charges), "positions": [list(p) for p in self.positions],
                "charge": self.charge, "spin": self.spin, "name": self.name}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Molecule:
        unknown = set(data) - {"charges", "positions", "charge", "spin", "name"}
        if unknown:
            raise ValueError(f"unknown Molecule field(s) {sorted(unknown)}")
        return cls(**data)

    def __str__(self) -> str:
        return (f"{self.name}: {self.n_nuclei} nuclei, {self.n_elec} electrons "
                f"({self.n_up} up, {self.n_down} down)")


@functools.lru_cache(maxsize=32)
def _tensors(system: Molecule, device: torch.device, dtype: torch.dtype):
    charges = torch.tensor(system.charges, dtype=dtype, device=device)
    positions = torch.tensor(system.positions, dtype=dtype, device=device).reshape(-1, 3)
    return charges, positions


def atom(symbol: str | int, charge: int = 0, spin: int | None = None) -> Molecule:
    """A single atom at the origin in its ground-state spin.

    The default spin is the Hund's-rule ground state (:data:`GROUND_STATE_SPIN`) of the neutral
    atom with the same number of electrons (right for the light ions of the first rows).

    Args:
        symbol: element symbol (``"Li"``) or atomic number.
        charge: net charge (default 0).
        spin: ``n_up - n_down`` (default: the ground state).

    Raises:
        ValueError: unknown element; spin inconsistent with the electron count; no default spin
            for more than 36 electrons (pass ``spin``).

    Example:
        >>> li = atom("Li")
        >>> li.n_up, li.n_down
        (2, 1)
    """
    z = _atomic_number(symbol)
    n_elec = z - int(charge)
    if spin is None and n_elec >= 1:
        if n_elec not in GROUND_STATE_SPIN:
            raise ValueError(f"no ground-state spin tabulated for {n_elec} electrons; pass spin=")
        spin = GROUND_STATE_SPIN[n_elec]
    suffix = "" if charge == 0 else f"{abs(charge) if abs(charge) > 1 else ''}{'+-'[charge < 0]}"
    return Molecule((z,), ((0.0, 0.0, 0.0),), charge=charge, spin=spin, name=_SYMBOLS[z] + suffix)


#: molecules by name at their benchmark geometries (bohr, along z)
NAMED_SYSTEMS: dict[str, Molecule] = {
    "H2": Molecule((1, 1), ((0.0, 0.0, 0.0), (0.0, 0.0, 1.4)), name="H2"),
    "LiH": Molecule((3, 1), ((0.0, 0.0, 0.0), (0.0, 0.0, 3.015)), name="LiH"),
}


def get_system(name: str | Molecule) -> Molecule:
    """An element symbol (``"Be"``: :func:`atom`) or a name in :data:`NAMED_SYSTEMS` (``"H2"``).

    Raises:
        ValueError: neither, with the closest valid names.
    """
    if isinstance(name, Molecule):
        return name
    if name in NAMED_SYSTEMS:
        return NAMED_SYSTEMS[name]
    if name in _ATOMIC_NUMBERS and name != "X":
        return atom(name)
    hint = did_you_mean(name, list(NAMED_SYSTEMS) + list(_SYMBOLS[1:37]), n=2)
    hint = f" ({hint})" if hint else ""
    raise ValueError(f"unknown system {name!r}{hint}; use an element symbol or one of "
                     f"{sorted(NAMED_SYSTEMS)}")
