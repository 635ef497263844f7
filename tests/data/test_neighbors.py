"""radius_graph against a brute-force numpy reference, and its invariants."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from equivar.data import radius_graph

PBC_PATTERNS = [tuple(p) for p in itertools.product([False, True], repeat=3)]


def brute_force(pos: np.ndarray, cutoff: float, cell: np.ndarray, pbc) -> list[tuple]:
    """Every (sender j, receiver i, s0, s1, s2) with |pos[j] - pos[i] + s @ cell| < cutoff."""
    pbc = np.asarray(pbc, dtype=bool)
    ranges = []
    for k in range(3):
        if not pbc[k]:
            ranges.append([0])
            continue
        # lattice-plane spacing along k, plus the spread of the atoms' fractional coordinates
        normal = np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])
        spacing = abs(cell[k] @ normal) / np.linalg.norm(normal)
        frac = np.linalg.solve(cell.T, pos.T)[k]  # [n_nodes]
        n_images = int(np.ceil(cutoff / spacing + np.ptp(frac))) + 1
        ranges.append(range(-n_images, n_images + 1))
    edges = []
    for s in itertools.product(*ranges):
        vec = pos[None, :, :] - pos[:, None, :] + np.array(s, float) @ cell  # [i, j, 3]
        i_idx, j_idx = np.nonzero(np.linalg.norm(vec, axis=-1) < cutoff)
        for i, j in zip(i_idx.tolist(), j_idx.tolist(), strict=True):
            if i != j or any(s):
                edges.append((j, i, *s))
    return sorted(edges)


def as_tuples(edge_index: torch.Tensor, shifts: torch.Tensor) -> list[tuple]:
    return [
        (j, i, *s) for (j, i), s in zip(edge_index.T.tolist(), shifts.long().tolist(), strict=True)
    ]


def random_cell(rng: np.random.Generator, scale: float = 2.5) -> np.ndarray:
    """A random triclinic cell, well away from degenerate."""
    return np.eye(3) * scale + rng.uniform(-0.6, 0.6, size=(3, 3))


def test_vesin_pair_convention():
    """vesin's (i, j, S) has vector pos[j] - pos[i] + S @ box: i is our receiver, j our sender."""
    import vesin

    rng = np.random.default_rng(0)
    cell = random_cell(rng)
    pos = rng.random((5, 3)) @ cell
    i, j, s, d = vesin.NeighborList(cutoff=4.0, full_list=True).compute(
        pos, cell, [True, True, True], quantities="ijSD"
    )
    assert len(i) > 0
    np.testing.assert_allclose(d, pos[j] - pos[i] + s @ cell, atol=1e-12)


@pytest.mark.parametrize("pbc", PBC_PATTERNS)
@pytest.mark.parametrize("cutoff", [1.7, 4.4])
def test_matches_brute_force(pbc, cutoff):
    rng = np.random.default_rng(10 * PBC_PATTERNS.index(pbc) + int(cutoff))
    cell = random_cell(rng)
    pos = rng.random((5, 3)) @ cell
    pos[:, 2] += rng.normal(size=5) * (0.0 if pbc[2] else 3.0)  # atoms outside a free direction
    edge_index, shifts = radius_graph(
        torch.tensor(pos), cutoff, torch.tensor(cell), torch.tensor(pbc)
    )
    got = as_tuples(edge_index, shifts)
    assert len(got) == len(set(got)), "duplicate edges"
    assert sorted(got) == brute_force(pos, cutoff, cell, pbc)


def test_invariants_large_cutoff():
    """Cutoff twice the cell: images of neighbours and self-images, all the edge invariants."""
    rng = np.random.default_rng(3)
    cell = random_cell(rng, scale=2.0)
    pos = torch.tensor(rng.random((4, 3)) @ cell)
    cell_t = torch.tensor(cell)
    cutoff = 4.5
    edge_index, shifts = radius_graph(pos, cutoff, cell_t, torch.tensor([True, True, True]))
    assert edge_index.dtype == torch.int64 and shifts.dtype == pos.dtype
    assert torch.equal(shifts, shifts.round())
    j, i = edge_index
    vec = pos[j] - pos[i] + shifts @ cell_t  # [n_edges, 3]
    assert vec.norm(dim=1).max() < cutoff
    assert not ((i == j) & (shifts == 0).all(dim=1)).any(), "zero-shift self edge"
    assert ((i == j) & (shifts != 0).any(dim=1)).any(), "expected self-image edges"
    edges = set(as_tuples(edge_index, shifts))
    pairs = [(j, i) for j, i, *_ in edges]
    assert len(pairs) > len(set(pairs)), "expected several images of one neighbour"
    for j_, i_, *s in edges:  # both directions, negated shift
        assert (i_, j_, *(-x for x in s)) in edges
    key = (edge_index[1] * len(pos) + edge_index[0]).tolist()
    assert key == sorted(key), "not sorted by receiver then sender"


def test_lattice_translation_gives_same_edge_vectors():
    rng = np.random.default_rng(4)
    cell = torch.tensor(random_cell(rng))
    pbc = torch.tensor([True, False, True])
    pos = torch.tensor(rng.random((6, 3))) @ cell

    def edge_vectors(p):
        ei, s = radius_graph(p, 3.5, cell, pbc)
        vec = p[ei[0]] - p[ei[1]] + s @ cell  # [n_edges, 3]
        key = torch.cat([ei.T.double(), vec], dim=1).numpy().round(8)
        return sorted(map(tuple, key.tolist()))

    moved = pos.clone()
    moved[2] += cell[0] - 2 * cell[2]  # lattice vectors along periodic directions
    assert edge_vectors(pos) == edge_vectors(moved)


def test_batched_graphs_equal_separate_graphs():
    rng = np.random.default_rng(5)
    sizes = [3, 4, 1, 5]
    cells = torch.tensor(np.stack([random_cell(rng) for _ in sizes]))
    pbc = torch.tensor([[True] * 3, [True, False, True], [True] * 3, [False] * 3])
    pos = [torch.tensor(rng.random((n, 3))) @ cells[g] for g, n in enumerate(sizes)]
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    edge_index, shifts = radius_graph(torch.cat(pos), 3.2, cells, pbc, batch)
    expected_ei, expected_s, offset = [], [], 0
    for g, p in enumerate(pos):
        ei, s = radius_graph(p, 3.2, cells[g], pbc[g])
        expected_ei.append(ei + offset)
        expected_s.append(s)
        offset += len(p)
    assert torch.equal(edge_index, torch.cat(expected_ei, dim=1))
    assert torch.equal(shifts, torch.cat(expected_s))
    assert (batch[edge_index[0]] == batch[edge_index[1]]).all()
    receivers = edge_index[1].tolist()
    assert receivers == sorted(receivers)


def test_non_periodic_defaults_and_float32():
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    edge_index, shifts = radius_graph(pos, 1.5)
    assert edge_index.tolist() == [[1, 0], [0, 1]]
    assert shifts.dtype == torch.float32 and shifts.shape == (2, 3) and not shifts.any()
    single, _ = radius_graph(pos[:1], 1.5)
    assert single.shape == (2, 0)


def test_cell_without_pbc_means_periodic_along_nonzero_vectors():
    pos = torch.tensor([[0.0, 0.0, 0.0]])
    cell = torch.diag(torch.tensor([2.0, 0.0, 0.0]))
    edge_index, shifts = radius_graph(pos, 2.5, cell)
    assert sorted(shifts[:, 0].tolist()) == [-1.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cutoff": 0.0}, "cutoff"),
        ({"cutoff": float("nan")}, "cutoff"),
        ({"pos": torch.zeros(3, 2)}, "pos must have shape"),
        ({"pos": torch.tensor([[0.0, 0, 0], [float("inf"), 0, 0]])}, "non-finite"),
        ({"pbc": torch.tensor([True, False, False])}, "no cell"),
        ({"cell": torch.zeros(3, 3), "pbc": torch.tensor([True, False, False])}, "cell vector 0"),
        ({"cell": torch.eye(4)}, "cell must have shape"),
        ({"batch": torch.tensor([1, 0])}, "sorted"),
    ],
)
def test_errors(kwargs, match):
    args = {"pos": torch.tensor([[0.0, 0, 0], [1.0, 0, 0]]), "cutoff": 2.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        radius_graph(**args)


def test_type_errors():
    with pytest.raises(TypeError, match="pos must be a floating-point tensor"):
        radius_graph(torch.zeros(2, 3, dtype=torch.int64), 2.0)
    with pytest.raises(TypeError, match="pos must be a torch.Tensor"):
        radius_graph(np.zeros((2, 3)), 2.0)
    with pytest.raises(TypeError, match="cutoff must be a real number"):
        radius_graph(torch.zeros(2, 3), "5")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_round_trip():
    rng = np.random.default_rng(6)
    cell = torch.tensor(random_cell(rng))
    pos = torch.tensor(rng.random((8, 3))) @ cell
    ei_cpu, s_cpu = radius_graph(pos, 3.0, cell, torch.tensor([True] * 3))
    ei, s = radius_graph(pos.cuda(), 3.0, cell.cuda(), torch.tensor([True] * 3).cuda())
    assert ei.is_cuda and s.is_cuda
    assert torch.equal(ei.cpu(), ei_cpu) and torch.equal(s.cpu(), s_cpu)
