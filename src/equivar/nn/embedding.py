"""Species and graph-level (total charge, spin) embeddings into invariant node features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ase.data import atomic_numbers as _ATOMIC_NUMBERS
from ase.data import chemical_symbols
from e3nn import o3
from torch import nn


def resolve_species(species: Sequence[int | str]) -> list[int]:
    """Sorted, unique atomic numbers from numbers or element symbols.

    Raises:
        ValueError: for an unknown symbol, a number outside 1..118, or an empty list.
    """
    out = set()
    for s in species:
        if isinstance(s, str):
            if s not in _ATOMIC_NUMBERS or s == "X":
                raise ValueError(f"unknown element symbol {s!r} in species")
            out.add(_ATOMIC_NUMBERS[s])
        else:
            z = int(s)
            if not 1 <= z <= 118:
                raise ValueError(f"atomic number {z} in species is outside 1..118")
            out.add(z)
    if not out:
        raise ValueError("species must name at least one element")
    return sorted(out)


class SpeciesEmbedding(nn.Module):
    """Atomic number -> learned invariant features (one row per supported element).

    Atomic numbers the model was not built for raise a ``ValueError`` naming them; they never
    index a wrong row silently.

    Args:
        species: supported elements (atomic numbers or symbols).
        num_features: width of the output scalars.

    Shapes:
        z: [n_nodes] int64 -> [n_nodes, num_features]
    """

    def __init__(self, species: Sequence[int | str], num_features: int) -> None:
        super().__init__()
        self.species = resolve_species(species)
        table = torch.full((119,), -1, dtype=torch.long)
        table[torch.tensor(self.species)] = torch.arange(len(self.species))
        self.register_buffer("index_of", table, persistent=False)
        self.embed = nn.Embedding(len(self.species), num_features)
        self.irreps_out = o3.Irreps(f"{num_features}x0e")

    def species_index(self, z: torch.Tensor, validate: bool = True) -> torch.Tensor:
        """Row index of each atom's element; raises for elements outside ``species``."""
        idx = self.index_of[z.clamp(0, 118)]  # [n_nodes]
        if validate and not torch.compiler.is_compiling():
            bad = (idx < 0) | (z < 1) | (z > 118)
            if bool(bad.any()):
                unknown = sorted({int(v) for v in z[bad].tolist()})
                names = [chemical_symbols[v] if 0 < v < 119 else str(v) for v in unknown]
                raise ValueError(
                    f"atomic numbers {unknown} ({', '.join(names)}) are not among the model's "
                    f"species {self.species}"
                )
        return idx

    def forward(self, z: torch.Tensor, validate: bool = True) -> torch.Tensor:
        return self.embed(self.species_index(z, validate))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(species={self.species} -> {self.irreps_out})"


class GraphInputEmbedding(nn.Module):
    """Total charge and spin multiplicity of each structure -> invariant node features.

    One model then serves neutral molecules, ions and radicals: the features are an MLP of
    ``(total_charge, spin - 1)`` per graph, broadcast to its atoms. Both inputs are invariant, so
    the embedding keeps every symmetry. A neutral singlet maps to the MLP of zeros.

    Args:
        num_features: width of the output scalars.
        hidden: width of the hidden layer (default 16).

    Shapes:
        total_charge: [n_graphs], spin: [n_graphs], batch: [n_nodes] -> [n_nodes, num_features]
    """

    def __init__(self, num_features: int, hidden: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, num_features))
        self.irreps_out = o3.Irreps(f"{num_features}x0e")

    def forward(
        self, total_charge: torch.Tensor, spin: torch.Tensor, batch: torch.Tensor
    ) -> torch.Tensor:
        g = torch.stack([total_charge, spin - 1.0], dim=-1)  # [n_graphs, 2]
        return self.mlp(g)[batch]  # [n_nodes, num_features]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(charge, spin -> {self.irreps_out})"
