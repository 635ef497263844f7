"""Field names, their shapes and how symmetry acts on them: the package's one vocabulary.

Every graph that flows through equivar is a :class:`torch_geometric.data.Data` (or ``Batch``) whose
fields carry the names below. Shapes use the fixed names ``n_nodes, n_edges, n_graphs``.

Edge convention (written once, here):
    ``edge_index[0]`` is the sender ``j`` (the neighbour), ``edge_index[1]`` the receiver ``i``
    (the centre); messages are summed onto ``edge_index[1]``, and

        edge_vec = pos[j] - pos[i] + shifts @ cell[batch[i]]

    with ``shifts`` the integer number of lattice vectors crossed (zero without periodicity).

Units: positions in Angstrom, energies in eV, forces in eV/Angstrom, stress in eV/Angstrom^3
(ASE's sign: ``stress = dE/d(strain) / volume``), dipoles in e*Angstrom, polarizabilities in
Angstrom^3. The qmc stack works in atomic units instead; conversions happen at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- inputs ----------------------------------------------------------------------------------
POSITIONS = "pos"  # [n_nodes, 3] float | Cartesian positions (Angstrom)
ATOMIC_NUMBERS = "z"  # [n_nodes] int64 | atomic numbers, 1..118
CELL = "cell"  # [n_graphs, 3, 3] float | lattice vectors as rows (Angstrom); zeros without pbc
PBC = "pbc"  # [n_graphs, 3] bool | periodicity along each lattice vector
EDGE_INDEX = "edge_index"  # [2, n_edges] int64 | (sender j, receiver i)
EDGE_SHIFTS = "shifts"  # [n_edges, 3] float | integer lattice translations of the sender
BATCH = "batch"  # [n_nodes] int64 | graph of each node (added by Batch)
NUM_NODES = "num_nodes"  # int | nodes in a Data (PyG's own key)
PTR = "ptr"  # [n_graphs + 1] int64 | first node of each graph, then n_nodes (added by Batch)
TOTAL_CHARGE = "total_charge"  # [n_graphs] float | net charge of the structure (e)
SPIN = "spin"  # [n_graphs] float | spin multiplicity 2S+1 (1 = closed shell)
VELOCITIES = "vel"  # [n_nodes, 3] float | particle velocities (N-body: length / time)

# --- derived inside a model ---------------------------------------------------------------
EDGE_VECTORS = "edge_vec"  # [n_edges, 3] | pos[j] - pos[i] + shift @ cell
EDGE_LENGTHS = "edge_len"  # [n_edges] | |edge_vec|

# --- targets and outputs ---------------------------------------------------------------------
ENERGY = "energy"  # [n_graphs] | total energy (eV)
NODE_ENERGY = "node_energy"  # [n_nodes] | per-atom energy contributions (eV)
FORCES = "forces"  # [n_nodes, 3] | -dE/dpos (eV/Angstrom)
STRESS = "stress"  # [n_graphs, 3, 3] | dE/d(strain) / volume (eV/Angstrom^3)
VIRIAL = "virial"  # [n_graphs, 3, 3] | -dE/d(strain) (eV)
DIPOLE = "dipole"  # [n_graphs, 3] | dipole moment (e*Angstrom)
POLARIZABILITY = "polarizability"  # [n_graphs, 3, 3] | polarizability tensor (Angstrom^3)
CHARGES = "charges"  # [n_nodes] | partial charges (e)

# --- N-body targets (equivar.data.datasets.nbody: a state ``horizon`` frames later) ----------
TARGET_POSITIONS = "target_pos"  # [n_nodes, 3] float | positions to predict (length)
TARGET_VELOCITIES = "target_vel"  # [n_nodes, 3] float | velocities to predict (length / time)


@dataclass(frozen=True)
class FieldSpec:
    """How a field is laid out and how O(3), translations and permutations act on it.

    Args:
        level: ``"graph"`` (leading axis ``n_graphs``) or ``"node"`` (leading axis ``n_nodes``,
            permuted with the atoms).
        rep: ``"0e"`` invariant scalar, ``"1o"`` polar vector ``v -> R v``, ``"1e"`` axial vector
            ``v -> det(R) R v``, ``"3x3"`` rank-2 Cartesian tensor ``T -> R T R^T``.
        translates: True for positions, which move under translations (nothing else does).
    """

    level: str
    rep: str
    translates: bool = False

    def __post_init__(self) -> None:
        if self.level not in ("graph", "node"):
            raise ValueError(f"FieldSpec.level must be 'graph' or 'node', got {self.level!r}")
        if self.rep not in ("0e", "1o", "1e", "3x3"):
            raise ValueError(f"FieldSpec.rep must be one of 0e, 1o, 1e, 3x3, got {self.rep!r}")


#: The symmetry behaviour of every known field. Models add their own outputs through
#: ``model.output_specs``; unknown graph-level targets default to invariant scalars.
FIELDS: dict[str, FieldSpec] = {
    POSITIONS: FieldSpec("node", "1o", translates=True),
    VELOCITIES: FieldSpec("node", "1o"),
    ATOMIC_NUMBERS: FieldSpec("node", "0e"),
    ENERGY: FieldSpec("graph", "0e"),
    NODE_ENERGY: FieldSpec("node", "0e"),
    FORCES: FieldSpec("node", "1o"),
    STRESS: FieldSpec("graph", "3x3"),
    VIRIAL: FieldSpec("graph", "3x3"),
    DIPOLE: FieldSpec("graph", "1o"),
    POLARIZABILITY: FieldSpec("graph", "3x3"),
    CHARGES: FieldSpec("node", "0e"),
    TOTAL_CHARGE: FieldSpec("graph", "0e"),
    SPIN: FieldSpec("graph", "0e"),
}

#: Fields that describe the structure rather than a target.
STRUCTURE_KEYS = frozenset(
    {POSITIONS, ATOMIC_NUMBERS, CELL, PBC, EDGE_INDEX, EDGE_SHIFTS, BATCH, TOTAL_CHARGE, SPIN}
)
