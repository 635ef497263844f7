"""Export without TorchScript: one .pt2 serves any number of atoms/edges/structures and gives the
eager model's energies, forces and stress; bad files are named."""

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.io import write
from torch_geometric.data import Batch

from equivar.cli import main
from equivar.data import from_ase
from equivar.models import build
from equivar.simulate import EquivarCalculator
from equivar.train import save_checkpoint
from equivar.train.export import OUTPUTS, export_model, load_exported

SPECIES = ["H", "C", "N", "O", "Cu"]
TINY = dict(preset="S", species=SPECIES, cutoff=3.5, num_channels=8, lmax=1, sh_lmax=1,
            num_layers=1, radial_hidden=[8], zbl=True)  # fmt: skip


@pytest.fixture(autouse=True)
def _single_threaded(one_thread):
    """Tiny tensors: see tests/conftest.py::one_thread."""


def _model(dtype):
    torch.manual_seed(0)
    return build("potential", **TINY, dtype=str(dtype).removeprefix("torch."))


@pytest.fixture(scope="module", params=[torch.float64, torch.float32], ids=["float64", "float32"])
def exported(request, tmp_path_factory):
    """(eager model, exported path, loaded potential): float64 through the CLI from a checkpoint
    and a structure file (water: 3 atoms, traced as two copies), float32 through export_model.
    Loading takes seconds (deserialising the graph), so it is done once here."""
    dtype = request.param
    folder = tmp_path_factory.mktemp(f"export_{dtype}")
    model = _model(dtype).eval()
    out = folder / "model.pt2"
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if dtype == torch.float64:
            save_checkpoint(folder / "best.pt", model)
            write(folder / "water.extxyz", molecule("H2O"))
            assert main(["export", str(folder / "best.pt"), "--example",
                         str(folder / "water.extxyz")]) == 0
            assert (folder / "best.pt2").is_file()
            out = folder / "best.pt2"
        else:
            model.train()
            assert export_model(model, out) == out
            # the caller's model is left as it was
            assert model.training and model.validate and model.compute_stress is None
            model.eval()
    finally:
        torch.set_num_threads(previous)
    return model, out, load_exported(out)


def _structures():
    copper = bulk("Cu", "fcc", a=3.6, cubic=True)
    copper.rattle(0.05, seed=1)
    return [molecule("CH3CH2OH"), molecule("C6H6"), copper, molecule("CH3CONH2"),
            molecule("CH4")]  # fmt: skip


@pytest.mark.parametrize("members", [[0], [1, 3], [0, 1, 2, 3, 4], [2]], ids=str)
def test_exported_equals_eager_on_other_sizes(exported, members):
    model, _, potential = exported
    dtype = next(model.parameters()).dtype
    assert potential.backend == "export" and potential.dtype == dtype
    structures = _structures()
    batch = Batch.from_data_list([from_ase(structures[k], 3.5, dtype=dtype) for k in members])
    got, ref = potential(batch), model(batch)
    assert sorted(got) == sorted(ref)  # stress/virial exactly when some structure is periodic
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for name in ref:
        scale = ref[name].nan_to_num().abs().max().clamp(min=1.0)
        torch.testing.assert_close(got[name], ref[name], rtol=0, atol=tol * scale,
                                   equal_nan=True, msg=name)
    assert got["forces"].abs().max() > 1e-3  # a real comparison, not zeros against zeros


def test_one_atom_without_edges(exported):
    model, _, potential = exported
    dtype = next(model.parameters()).dtype
    atom = from_ase(molecule("CH4")[:1], 3.5, dtype=dtype)
    assert atom.edge_index.shape[1] == 0
    got, ref = potential(atom), model(atom)
    torch.testing.assert_close(got["energy"], ref["energy"])
    assert torch.all(got["forces"] == 0)


def test_the_file_is_a_plain_torch_export_program(exported):
    """No equivar code is needed to run it: torch.export.load and the program's signature."""
    model, path, _ = exported
    dtype = next(model.parameters()).dtype
    program = torch.export.load(path).module()
    data = from_ase(molecule("C6H6"), 3.5, dtype=dtype)
    n = data.num_nodes
    inputs = (data.pos, data.z, data.edge_index, data.shifts, data.cell.reshape(1, 3, 3),
              torch.zeros(n, dtype=torch.long), torch.zeros(1, dtype=dtype),
              torch.ones(1, dtype=dtype))  # fmt: skip
    outputs = dict(zip(OUTPUTS, program(*inputs), strict=True))
    ref = model(data)
    torch.testing.assert_close(outputs["forces"], ref["forces"])
    assert torch.isnan(outputs["stress"]).all()  # a molecule has no stress


def test_calculator_takes_the_exported_file(exported):
    model, path, potential = exported
    atoms = molecule("CH3CH2OH")
    reference = EquivarCalculator(model).get_forces(atoms.copy())
    calc = EquivarCalculator(str(path))  # loaded from the path
    assert calc.dtype == next(model.parameters()).dtype
    tol = 1e-10 if calc.dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(calc.get_forces(atoms.copy()), reference, atol=tol)
    other = "float32" if calc.dtype == torch.float64 else "float64"
    with pytest.raises(ValueError, match="dtype it was exported in"):
        EquivarCalculator(potential, dtype=other)


def test_unknown_elements_and_training_are_refused(exported):
    model, _, potential = exported
    dtype = next(model.parameters()).dtype
    with pytest.raises(ValueError, match=r"\[17\] \(Cl\)"):
        potential(from_ase(molecule("CH3Cl"), 3.5, dtype=dtype))
    with pytest.raises(ValueError, match="inference only"):
        potential(from_ase(molecule("CH4"), 3.5, dtype=dtype), create_graph=True)


def test_missing_corrupt_and_foreign_files_are_named(tmp_path, exported):
    _, path, _ = exported
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_exported(tmp_path / "none.pt2")
    raw = path.read_bytes()
    (tmp_path / "cut.pt2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_exported(tmp_path / "cut.pt2")
    (tmp_path / "noise.pt2").write_bytes(b"not a zip archive" * 10)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_exported(tmp_path / "noise.pt2")
    torch.export.save(torch.export.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),)),
                      tmp_path / "other.pt2")
    with pytest.raises(ValueError, match="not an equivar export"):
        load_exported(tmp_path / "other.pt2")
    with pytest.raises(ValueError, match="no AOTInductor build"):
        load_exported(path, backend="aoti")
    with pytest.raises(ValueError, match="backend"):
        load_exported(path, backend="jit")


def test_bad_export_arguments_are_named(tmp_path):
    model = _model(torch.float64)
    with pytest.raises(ValueError, match=r"\.pt2"):
        export_model(model, tmp_path / "model.pt")
    with pytest.raises(TypeError, match="potential"):
        export_model(torch.nn.Linear(2, 2), tmp_path / "model.pt2")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_model(tmp_path / "none.pt", tmp_path / "model.pt2")
    with pytest.raises(FileNotFoundError, match="example structure"):
        export_model(model, tmp_path / "model.pt2", example=tmp_path / "none.xyz")
    far = molecule("H2")
    far.positions[1] += 10.0
    with pytest.raises(ValueError, match="no edge within the cutoff"):
        export_model(model, tmp_path / "model.pt2", example=far)
    assert not (tmp_path / "model.pt2").exists()


def test_a_model_never_run_exports(tmp_path, monkeypatch):
    """Exporting first thing in a process (a loaded checkpoint, no eager call before): the
    convolution's constants must not be created while tracing (they were, and the check failed
    with a data-dependent guard error)."""
    from equivar.kernels import dense

    monkeypatch.setattr(dense, "_plans", {})  # as in a fresh process
    model = _model(torch.float32)
    path = export_model(model, tmp_path / "fresh.pt2")
    assert path.exists() and not dense._plans


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*LeafSpec")  # inside torch's AOTInductor packaging
def test_aoti_build_equals_eager(tmp_path):
    """AOTInductor: C++ generated and compiled for this CPU (about a minute)."""
    model = _model(torch.float64).eval()
    path = export_model(model, tmp_path / "aoti.pt2", aoti=True)
    assert load_exported(path).backend == "export"  # machine code only when asked for
    potential = load_exported(path, backend="auto")
    assert potential.backend == "aoti" and potential.metadata["aoti"]
    structures = _structures()
    batch = Batch.from_data_list([from_ase(a, 3.5, dtype=torch.float64) for a in structures])
    got, ref = potential(batch), model(batch)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=0, atol=1e-10, equal_nan=True)
    assert load_exported(path, backend="export").backend == "export"  # both in one file
