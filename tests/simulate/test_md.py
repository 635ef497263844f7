"""run_md and relax_batch: energy conservation, ensembles, trajectories, restarts, errors."""

import numpy as np
import pytest
from ase.build import molecule
from ase.io import read
from ase.optimize import FIRE

from equivar.data import read as read_graphs
from equivar.simulate import EquivarCalculator, run_md
from equivar.simulate.md import relax_batch

#: NVE with velocity Verlet: the total energy of ethanol at 300 K with dt = 0.25 fs stays within
#: this of its start (measured: 6e-5 eV for this model; the bound leaves room for other seeds)
NVE_TOLERANCE_EV = 5e-4


def test_nve_conserves_energy(potential, ethanol):
    result = run_md(potential, ethanol, ensemble="nve", steps=400, dt_fs=0.25,
                    temperature_K=300, log_interval=5, progress=False)  # fmt: skip
    assert result.temperature_K[0] == pytest.approx(300.0)
    assert np.all(np.isfinite(result.total_energy))
    swing = np.abs(result.total_energy - result.total_energy[0]).max()
    assert swing < NVE_TOLERANCE_EV
    # velocity Verlet's error shrinks as dt^2: at 4x the step, 16x the swing (allow 4..40)
    coarse = run_md(potential, ethanol, steps=100, dt_fs=1.0, temperature_K=300,
                    log_interval=1, progress=False)  # fmt: skip
    ratio = np.abs(coarse.total_energy - coarse.total_energy[0]).max() / swing
    assert 4 < ratio < 40, ratio
    assert abs(result.energy_drift()) < 1e-3  # eV/atom/ps
    assert ethanol.get_momenta().sum() == 0  # the input was not touched


def test_trajectory_is_written_and_readable(tmp_path, potential, ethanol):
    path = tmp_path / "out" / "traj.extxyz"
    result = run_md(potential, ethanol, steps=20, log_interval=5, trajectory=path,
                    trajectory_interval=4, progress=False)  # fmt: skip
    frames = read(path, ":")
    assert len(frames) == 6 and [f.info["md_step"] for f in frames] == [0, 4, 8, 12, 16, 20]
    assert frames[-1].info["time_fs"] == pytest.approx(10.0)
    np.testing.assert_allclose(frames[-1].positions, result.atoms.positions, atol=1e-7)
    np.testing.assert_allclose(frames[-1].get_forces(), result.atoms.get_forces(), atol=1e-7)
    assert frames[-1].get_potential_energy() == pytest.approx(result.potential_energy[-1])
    assert np.any(frames[-1].get_momenta())
    graphs = read_graphs(path, cutoff=3.5)  # and it is training data for equivar
    assert len(graphs) == 6 and graphs[0].forces.shape == (9, 3)
    assert result.time_fs.tolist() == [0.0, 2.5, 5.0, 7.5, 10.0]


def test_restart_from_a_frame_keeps_its_momenta(tmp_path, potential, ethanol):
    path = tmp_path / "a.extxyz"
    first = run_md(potential, ethanol, steps=10, trajectory=path, progress=False)
    again = run_md(potential, read(path, -1), steps=10, temperature_K=5000, progress=False)
    assert again.temperature_K[0] == pytest.approx(first.temperature_K[-1], rel=1e-6)


def test_nvt_is_seeded_and_holds_the_centre_of_mass(potential, ethanol):
    runs = [run_md(potential, ethanol, ensemble="nvt", steps=30, temperature_K=500, seed=7,
                   progress=False) for _ in range(2)]  # fmt: skip
    np.testing.assert_array_equal(runs[0].atoms.positions, runs[1].atoms.positions)
    com = runs[0].atoms.get_center_of_mass()
    np.testing.assert_allclose(com, ethanol.get_center_of_mass(), atol=1e-10)
    other = run_md(potential, ethanol, ensemble="nvt", steps=30, seed=8, progress=False)
    assert not np.allclose(other.atoms.positions, runs[0].atoms.positions)


def test_npt_changes_the_volume(potential, copper):
    result = run_md(potential, copper, ensemble="npt", steps=10, dt_fs=1.0, temperature_K=300,
                    pressure_GPa=1.0, log_interval=5, progress=False)  # fmt: skip
    assert np.all(np.isfinite(result.volume)) and np.all(result.volume > 0)
    assert result.volume[-1] != result.volume[0]
    assert len(result.atoms.get_stress()) == 6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ensemble": "nvx"}, "ensemble must be one of"),
        ({"steps": -1}, "steps"),
        ({"dt_fs": 0.0}, "dt_fs"),
        ({"ensemble": "nvt", "temperature_K": 0.0}, "temperature_K"),
        ({"ensemble": "npt"}, "fully periodic"),
        ({"log_interval": 0}, "log_interval"),
    ],
)
def test_bad_arguments_are_named(potential, ethanol, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_md(potential, ethanol, progress=False, **kwargs)


def test_not_atoms(potential):
    with pytest.raises(TypeError, match="ase.Atoms"):
        run_md(potential, "ethanol.xyz", progress=False)


def test_relax_batch_follows_ase_fire(potential):
    structures = [molecule("H2O"), molecule("CH3CH2OH"), molecule("C6H6")]
    for k, atoms in enumerate(structures):
        atoms.rattle(0.05, seed=k)
    relaxed, n_steps = relax_batch(potential, structures, fmax=0.02, steps=200)
    for atoms, done, n in zip(structures, relaxed, n_steps, strict=True):
        ref = atoms.copy()
        ref.calc = EquivarCalculator(potential)
        opt = FIRE(ref, logfile=None)
        opt.run(fmax=0.02, steps=200)
        assert n == opt.get_number_of_steps() < 200
        np.testing.assert_allclose(done.positions, ref.positions, atol=1e-8)
        assert np.abs(done.get_forces()).max() < 0.02
        assert done.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-10)


def test_a_blow_up_stops_the_run_and_says_why(tmp_path, potential, ethanol):
    """Too large a time step heats ethanol past 10x its temperature within a few steps: the run
    stops there with a named error, keeping the trajectory written so far."""
    from equivar.simulate import MDBlowUpError

    traj = tmp_path / "md.extxyz"
    with pytest.raises(MDBlowUpError, match=r"blew up .*temperature .* limit 3e\+03 K.*time step "
                                            r"\(10 fs\)") as info:
        run_md(potential, ethanol, steps=300, dt_fs=10.0, temperature_K=300, trajectory=traj,
               log_interval=1, progress=False)
    assert str(traj) in str(info.value)
    frames = read(traj, ":")
    assert 1 <= len(frames) < 300 and np.isfinite(frames[-1].positions).all()
    # the limit is the caller's to raise
    result = run_md(potential, ethanol, steps=3, dt_fs=10.0, temperature_K=300,
                    max_temperature_K=1e7, progress=False)
    assert len(result.time_fs) == 1  # steps 0 only (log_interval 10)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"dt_fs": 1e6}, "dt_fs=1e\\+06 fs is above 20 fs"),
    ({"temperature_K": 1e12}, "temperature_K=1e\\+12 K is above 100000 K"),
    ({"max_temperature_K": -1.0}, "max_temperature_K"),
])  # fmt: skip
def test_absurd_time_steps_and_temperatures_are_refused(potential, ethanol, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_md(potential, ethanol, steps=1, progress=False, **kwargs)
