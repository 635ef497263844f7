"""Benchmark scripts: the N-body and MD17 scripts' model options reach the builder as asked, and
the quick modes run end to end (slow)."""

import argparse
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from equivar.models import build

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" /
                                                  f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _args(argv):
    nbody = _module("nbody")
    return nbody, nbody.make_parser().parse_args(argv)


def test_nbody_options_keep_the_preset_and_apply_flags():
    nbody, args = _args(["--preset", "integrator"])
    options = nbody.model_options("egnn", args)
    assert options == {"preset": "integrator"}  # the preset's own choices stand
    torch.manual_seed(0)
    a = build("nbody", layer="egnn", dtype="float64", **options)
    nbody, args = _args(["--num-channels", "64", "--num-layers", "8", "--edge-features",
                         "coulomb", "--carry-velocity", "--share-weights"])
    torch.manual_seed(0)
    b = build("nbody", layer="egnn", dtype="float64", **nbody.model_options("egnn", args))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert nbody.model_name("egnn", args) == ("egnn (M, num_channels=64, num_layers=8, coulomb, "
                                              "carry, shared)")
    nbody, args = _args(["--preset", "integrator", "--edge-features", "charges"])
    model = build("nbody", layer="egnn", **nbody.model_options("egnn", args))
    assert model.trunk.edge_features == "charges" and model.trunk.carry_velocity


def test_md17_equivar_options_reach_the_builder():
    md17 = _module("md17")
    key, value = md17.key_value("radial_hidden=[16, 8]")
    assert (key, value) == ("radial_hidden", [16, 8])
    with pytest.raises(Exception, match="KEY=VALUE"):
        md17.key_value("correlation")

    class Args:
        preset, cutoff = "S", 4.0
        equivar_option = [("correlation", 1), ("num_channels", 8)]

    stats = {"species": [1, 6, 8], "mean_num_neighbors": 5.0}
    model = md17.make_model("equivar", stats, Args)
    assert model.config["correlation"] == 1 and model.config["num_channels"] == 8
    assert model.config["lmax"] == 2  # md17.EQUIVAR_OPTIONS on top of the preset
    Args.equivar_option = [("lmax", 1)]
    assert md17.make_model("equivar", stats, Args).config["lmax"] == 1  # and options override it
    assert model.config["cutoff"] == 4.0 and model.species == [1, 6, 8]
    Args.equivar_option = [("corelation", 1)]
    with pytest.raises(ValueError, match="did you mean 'correlation'"):
        md17.make_model("equivar", stats, Args)


def _md17_file(path, molecule, forces):
    """An md17 --json file with one molecule at 1000 frames: {model: force MAE}."""
    runs = [{"molecule": molecule, "n_train": 1000, "model": m, "energy_mae_meV": 1.0,
             "forces_mae_meV_A": f} for m, f in forces.items()]  # fmt: skip
    row = {"molecule": molecule, "n_train": 1000, "runs": runs, "minutes": 3.0, "seed": 0}
    path.write_text(json.dumps({"benchmark": "md17", "rows": [row]}))
    return str(path)


def test_md17_merge_combines_runs_and_summarises(tmp_path, capsys):
    md17 = _module("md17")
    a = _md17_file(tmp_path / "a.json", "uracil", {"equivar": 10.0, "schnet": 40.0,
                                                    "dimenet++": 30.0})
    b = _md17_file(tmp_path / "b.json", "benzene", {"equivar": 10.0, "schnet": 15.0,
                                                     "dimenet++": 5.0})
    out = tmp_path / "all.json"
    md17.main(["--merge", a, b, "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["molecule"] for r in rows] == ["benzene", "uracil"]  # the dataset's order
    assert rows[1]["2x goal"] == "yes" and rows[0]["2x goal"] == "no"
    assert rows[0]["F dimenet++/equivar"] == 0.5 and rows[0]["minutes"] == 3.0
    assert len(rows[0]["runs"]) == 3
    summary = md17.overall(rows, list(md17.MODELS))
    assert summary["F schnet/equivar (geo. mean)"] == pytest.approx((1.5 * 4.0) ** 0.5, abs=0.01)
    assert summary["F dimenet++/equivar (geo. mean)"] == pytest.approx(1.5 ** 0.5, abs=0.01)
    assert summary["equivar lowest F"] == 1 and summary["2x goal met"] == 1
    assert "2x goal met 1" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="cannot read md17 rows"):
        md17.main(["--merge", str(tmp_path / "missing.json")])


@pytest.mark.slow
@pytest.mark.parametrize("script", ["nbody.py", "lr_sweep.py", "train_speed.py"])
def test_quick_modes_run(script, tmp_path):
    out = tmp_path / "rows.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json",
                          str(out)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert out.exists() and out.stat().st_size > 0


def test_md17_json_holds_every_finished_run_as_they_arrive(tmp_path, monkeypatch):
    """A long md17 job stopped half-way keeps what finished: the JSON is rewritten after each
    run, and ``--merge`` reads such a file."""
    md17 = _module("md17")
    out = tmp_path / "md17.json"
    seen = []

    def fake_run(task, args):
        molecule, n_train, name = task
        if out.exists():  # what the file held before this run
            seen.append(sum(len(r["runs"]) for r in json.loads(out.read_text())["rows"]))
        if (molecule, n_train, name) == ("benzene", 50, "equivar"):
            raise KeyboardInterrupt  # the job is stopped here
        return {"molecule": molecule, "n_train": n_train, "model": name,
                "energy_mae_meV": 1.0, "forces_mae_meV_A": {"equivar": 5.0}.get(name, 20.0),
                "steps": 1, "epochs": 1, "train_s": 1.0}  # fmt: skip

    monkeypatch.setattr(md17, "run_one", fake_run)
    with pytest.raises(KeyboardInterrupt):
        md17.main(["--molecules", "uracil", "benzene", "--n-train", "1000", "50", "--jobs", "1",
                   "--json", str(out)])
    # 12 tasks, the equivar ones last, benzene-50 the very last: it stopped the job
    assert seen == list(range(1, 12))
    rows = json.loads(out.read_text())["rows"]
    assert sum(len(r["runs"]) for r in rows) == 11
    uracil = {(r["molecule"], r["n_train"]): r for r in rows}[("uracil", 50)]
    assert uracil["2x goal"] == "yes" and uracil["F schnet/equivar"] == 4.0
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no leftovers
    md17.main(["--merge", str(out)])


def test_budgeted_training_takes_weight_decay_and_ema_decay():
    """The shared loop's ``weight_decay`` shrinks weights with no gradient, and ``ema_decay=0``
    makes the moving average the current weights."""
    from torch_geometric.data import Data

    common = _module("common")
    frames = [Data(x=torch.zeros(1, 1)) for _ in range(4)]

    def run(weight_decay, ema_decay):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        with torch.no_grad():
            model.weight.fill_(1.0)

        def loss_fn(m, batch):  # a loss that ignores the weight: only decay moves it
            return m.bias.pow(2).sum() + 0.0 * m.weight.sum()

        loop = common.budgeted_training(model, frames, loss_fn, lr=0.1, batch_size=2, warmup=1,
                                        seed=0, device=torch.device("cpu"), epochs=2,
                                        weight_decay=weight_decay, ema_decay=ema_decay)
        *_, (step, _, done, ema) = list(loop)
        assert step == 4 and done
        return model, ema

    model, _ = run(0.0, 0.99)
    assert torch.equal(model.weight, torch.ones_like(model.weight))
    model, ema = run(0.5, 0.0)
    assert (model.weight < 1.0).all()  # AdamW's decoupled decay: w *= (1 - lr * wd) per step
    # learning rate: peak 0.1 after a one-step warm-up, cosine over the 4 steps of 2 epochs
    shrink = math.prod(1 - 0.5 * 0.1 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4))
    torch.testing.assert_close(model.weight, torch.full_like(model.weight, shrink))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(ema.shadow[key], value)


def test_budgeted_training_rolls_back_a_collapsed_epoch():
    """An epoch whose training loss jumps far above the best (or goes non-finite) is undone:
    weights, optimiser and EMA return to the last healthy epoch and the lr halves."""
    from torch_geometric.data import Data

    common = _module("common")
    frames = [Data(x=torch.zeros(1, 1)) for _ in range(4)]
    calls = {"n": 0}

    def loss_fn(m, batch):  # steps 5-6 (epoch 3) blow up by 1e4, step 9-10 (epoch 5) gives NaN
        calls["n"] += 1
        loss = (m.weight - 3.0).pow(2).sum() + m.bias.pow(2).sum() + 1.0
        if calls["n"] in (5, 6):
            return loss * 1e4
        return loss * float("nan") if calls["n"] in (9, 10) else loss

    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    events, weights, lrs = [], [], []
    loop = common.budgeted_training(model, frames, loss_fn, lr=0.01, batch_size=2, warmup=0,
                                    seed=0, device=torch.device("cpu"), epochs=6, events=events)
    for _step, _, _, _ in loop:
        weights.append(model.weight.detach().clone())
        lrs.append(loop.gi_frame.f_locals["opt"].param_groups[0]["lr"])
    assert [e["epoch"] for e in events] == [3, 5]
    assert events[0]["loss"] > 1e3 * events[0]["best"] and math.isnan(events[1]["loss"])
    torch.testing.assert_close(weights[5], weights[3])  # epoch 3 undone: back to end of epoch 2
    assert not torch.isnan(weights[-1]).any()
    def cosine(k, scale):  # the lr of step k (0-based) of 12, times the guard's scale
        return 0.01 * 0.5 * (1 + math.cos(math.pi * k / 12)) * scale

    assert lrs[6] == pytest.approx(cosine(6, 0.5)) and lrs[10] == pytest.approx(cosine(10, 0.25))
    off = common.budgeted_training(torch.nn.Linear(2, 1), frames, loss_fn, lr=0.01, batch_size=2,
                                   warmup=0, seed=0, device=torch.device("cpu"), epochs=3,
                                   recover=None, events=(none := []))
    list(off)
    assert none == []


def test_nbody_ensemble_scores_the_mean_prediction():
    """An ensemble of one model scores as the model; of a model and its negation-shifted twin
    it scores the mean prediction."""
    nbody = _module("nbody")
    rng = np.random.default_rng(0)
    arrays = {"pos": rng.normal(size=(4, 49, 5, 3)), "vel": rng.normal(size=(4, 49, 5, 3)),
              "charges": rng.choice([-1.0, 1.0], size=(4, 5))}
    ds = nbody.NBodyDataset("test", trajectories=arrays)

    class Shift(torch.nn.Module):  # predicts the input positions plus a constant
        def __init__(self, c):
            super().__init__()
            self.c = c

        def forward(self, batch):
            return {"pos": batch.pos + self.c}

    cpu = torch.device("cpu")
    one = nbody.evaluate(Shift(0.5), ds, 2, cpu)
    assert nbody.evaluate([Shift(0.5)], ds, 2, cpu) == pytest.approx(one)
    both = nbody.evaluate([Shift(0.5), Shift(-0.5)], ds, 2, cpu)  # mean: the input itself
    assert both == pytest.approx(nbody.evaluate(Shift(0.0), ds, 2, cpu))
    scores = nbody.ensemble_scores([{"model": Shift(0.5)}, {"model": Shift(-0.5)}],
                                   {"test": ds, "fresh": [ds, ds]}, cpu)  # fmt: skip
    assert scores["ensemble_test"] == pytest.approx(both)
    assert scores["ensemble_fresh_mse"] == pytest.approx(both)


def test_nbody_pooled_error_and_time_reversal():
    """The fresh-set error bar holds seed and test-set spread; time reversal swaps the frames and
    negates the velocities, doubling the training pairs."""
    nbody = _module("nbody")
    mean, sem, seed_std, set_std = nbody.pooled_error([[1.0, 3.0], [3.0, 5.0]])
    assert mean == pytest.approx(3.0)
    assert seed_std == pytest.approx(math.sqrt(2.0)) and set_std == pytest.approx(math.sqrt(2.0))
    assert sem == pytest.approx(math.sqrt(2.0 / 2 + 2.0 / 2))
    rng = np.random.default_rng(0)
    arrays = {"pos": rng.normal(size=(3, 49, 5, 3)), "vel": rng.normal(size=(3, 49, 5, 3)),
              "charges": rng.choice([-1.0, 1.0], size=(3, 5))}
    ds = nbody.NBodyDataset("train", trajectories=arrays)
    both = nbody.time_reversed(ds)
    assert len(both) == 2 * len(ds)
    torch.testing.assert_close(both.pos[3:], ds.target_pos)
    torch.testing.assert_close(both.vel[3:], -ds.target_vel)
    torch.testing.assert_close(both.target_pos[3:], ds.pos)
    torch.testing.assert_close(both.charges[3:], ds.charges)
    assert both.batch(slice(0, 6)).num_graphs == 6


def test_readme_results_table_is_derived_from_the_json_files(capsys):
    """``benchmarks/claims.py``: the README's table equals what the recorded JSON files give."""
    claims = _module("claims")
    assert claims.main(["--quick"]) == 0, capsys.readouterr().out
    assert "matches the JSON files" in capsys.readouterr().out


def test_threads_benchmark_quick_mode(tmp_path):
    """``benchmarks/threads.py`` measures in child processes and writes its rows."""
    threads = _module("threads")
    rows = threads.main(["--quick", "--threads", "1", "--wait-policy", "PASSIVE", "--json",
                         str(tmp_path / "t.json")])
    assert len(rows) == 1 and rows[0]["threads"] == 1 and rows[0]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert rows[0]["median ms"] > 0 and rows[0]["backend"] in ("fused_cpu", "dense")
    assert json.loads((tmp_path / "t.json").read_text())["benchmark"] == "threads"


@pytest.mark.parametrize("peer", ["mace", "nequip"])
@pytest.mark.filterwarnings("ignore:`torch.jit.set_fusion_strategy` is deprecated")  # nequip's
def test_md17_peer_models_are_equivariant_conservative_and_train(peer, dtype, one_thread):
    """MACE and NequIP (``benchmarks/peers.py``) on two ethanol frames of ``md17.py``: energy and
    forces of the right shapes, forces ``-dE/dpos`` (finite differences, float64), rotated,
    reflected, translated and relabelled inputs give transformed outputs (relative tolerance
    1e-9 in float64, 1e-5 in float32), periodic images change nothing, and one step of the
    shared loop runs."""
    pytest.importorskip(peer)
    from torch_geometric.data import Batch

    from equivar.data import compute_statistics
    from equivar.data.datasets.md17 import load_md17
    from equivar.testing import assert_conservative, assert_equivariant
    from equivar.train.config import LossConfig
    from equivar.train.losses import total_loss

    md17, peers = _module("md17"), _module("peers")
    frames = list(load_md17("ethanol", 5.0, split="train", train_size=50, dtype=dtype))[:2]
    stats = compute_statistics(frames)
    batch = Batch.from_data_list(frames)
    if dtype == torch.float32:  # md17.py's own builder, --*-size options applied

        class Args:
            cutoff, seed = 5.0, 0
            mace_size, nequip_size = [("channels", 8)], [("features", 8), ("layers", 2)]

        model = md17.make_model(peer, stats, Args)
    elif peer == "mace":
        model = peers.mace_potential(stats, 5.0, channels=8).to(dtype)
    else:
        model = peers.nequip_potential(stats, 5.0, dtype=dtype, features=8, layers=2)
    assert torch.get_default_dtype() == torch.float32  # NequIP's global state did not leak
    model.eval()
    out = model(batch)
    assert out["energy"].shape == (2,) and out["forces"].shape == (18, 3)
    assert out["energy"].dtype == dtype and out["forces"].dtype == dtype
    # the energy scale of md17.py: per-element energies put E near the labels from the start
    assert (out["energy"] - batch.energy).abs().max() < 5.0
    rtol = 1e-9 if dtype == torch.float64 else 1e-5
    assert_equivariant(model, batch, rtol=rtol, atol=rtol)
    if dtype == torch.float64:
        assert_conservative(model, batch, check_stress=False)
    # periodic images: atoms moved by lattice vectors give edges with cell shifts and change
    # nothing, so each package's shift convention is translated right (a flipped sign moves
    # the energy by ~2e-2 eV here)
    from ase import Atoms

    from equivar.data import from_ase

    atoms = Atoms(numbers=frames[0].z.numpy(), positions=frames[0].pos.double().numpy(),
                  cell=[12.0, 12.0, 12.0], pbc=True)  # fmt: skip
    atoms.center()
    moved = atoms.copy()
    moved.positions[0] += atoms.cell[0] - atoms.cell[1]
    moved.positions[3] -= atoms.cell[2]
    a, b = (Batch.from_data_list([from_ase(x, 5.0, dtype=dtype)]) for x in (atoms, moved))
    assert (b.shifts != 0).any()
    out_a, out_b = model(a), model(b)
    torch.testing.assert_close(out_b["energy"], out_a["energy"], rtol=rtol, atol=0.0)
    torch.testing.assert_close(out_b["forces"], out_a["forces"], rtol=0.0, atol=rtol)

    weights = {"energy": 1.0, "forces": 10.0}
    before = [p.detach().clone() for p in model.parameters()]
    losses = []

    def loss_fn(model, batch):
        losses.append(total_loss(model(batch), batch, weights, LossConfig(**weights))[0])
        return losses[-1]

    steps = list(md17.budgeted_training(model, frames, loss_fn, lr=1e-3, batch_size=2, warmup=1,
                                        seed=0, device=torch.device("cpu"), epochs=1))
    assert len(steps) == 1 and math.isfinite(losses[0].item())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_md17_learning_rates_by_name_or_position():
    """``md17.py --lr``: bare values in the order of ``MODELS`` (the old three-value form), or
    ``MODEL=LR``; the rest keep their defaults."""
    md17 = _module("md17")
    assert md17.learning_rates([]) == md17.LEARNING_RATES
    lr = md17.learning_rates(["0.05", "1e-2", "mace=0.02"])
    assert (lr["equivar"], lr["schnet"], lr["mace"]) == (0.05, 0.01, 0.02)
    assert lr["dimenet++"] == md17.LEARNING_RATES["dimenet++"]
    long = md17.learning_rates([], minutes=30)  # a long budget: equivar's stable peak lr
    assert long["equivar"] == md17.LONG_BUDGET_LR["equivar"]
    assert long["mace"] == md17.LEARNING_RATES["mace"]
    assert md17.learning_rates(["equivar=0.05"], minutes=30)["equivar"] == 0.05  # asked: kept
    with pytest.raises(ValueError, match="unknown model 'mac'"):
        md17.learning_rates(["mac=0.1"])
    with pytest.raises(ValueError, match="not a number"):
        md17.learning_rates(["mace=fast"])


def test_recipe_plateau_stage_two_and_precision():
    """A peer's own recipe in the shared loop: ``monitor()`` once per epoch of stage one (with
    the EMA weights loaded), the plateau cuts the learning rate by its factor when the monitor
    does not improve, stage two sets its learning rate, batches arrive in the recipe's dtype."""
    from torch_geometric.data import Data

    common = _module("common")
    frames = [Data(x=torch.ones(1, 2, dtype=torch.float32)) for _ in range(6)]
    model = torch.nn.Linear(2, 1).double()
    seen = {"dtypes": set(), "monitor": 0}

    def loss_fn(m, batch):
        seen["dtypes"].add(batch.x.dtype)
        return m(batch.x).pow(2).mean()

    def monitor():
        seen["monitor"] += 1
        return 1.0  # never improves: the plateau cuts at every epoch after the first

    recipe = common.Recipe(optimizer="amsgrad", lr=0.1, warmup=0, schedule="plateau",
                           plateau=(0.5, 0, 1e-4, 0.0), dtype="float64", batch_size=3,
                           stage_two_at=None, clip=None)
    loop = common.budgeted_training(model, frames, loss_fn, lr=99.0, batch_size=1, warmup=5,
                                    seed=0, device=torch.device("cpu"), epochs=4, recipe=recipe,
                                    monitor=monitor)
    lrs = []
    for step, _, _, _ in loop:  # noqa: B007 (the last step is checked below)
        lrs.append(loop.gi_frame.f_locals["opt"].param_groups[0]["lr"])
    assert step == 8 and seen["dtypes"] == {torch.float64}  # batch 3: 2 steps per epoch
    assert seen["monitor"] == 3  # after epochs 1-3 (the last step ends the budget)
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025])

    two = common.Recipe(lr=0.1, warmup=0, stage_two_at=0.5, stage_two_lr=1e-3)
    loop = common.budgeted_training(model.float(), frames, loss_fn, lr=0.1, batch_size=2,
                                    warmup=0, seed=0, device=torch.device("cpu"), epochs=2,
                                    recipe=two)
    lrs = [loop.gi_frame.f_locals["opt"].param_groups[0]["lr"] for _ in loop]
    assert lrs[-1] == pytest.approx(1e-3) and lrs[0] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="needs monitor"):
        next(common.budgeted_training(model, frames, loss_fn, lr=0.1, batch_size=2, warmup=0,
                                      seed=0, device=torch.device("cpu"), epochs=1,
                                      recipe=common.Recipe(schedule="plateau")))
    with pytest.raises(ValueError, match="optimizer"):
        common.Recipe(optimizer="sgd")
    with pytest.raises(ValueError, match="stage_two_at"):
        common.Recipe(stage_two_at=1.5)


def test_md17_peer_recipes_and_best_of_two(tmp_path):
    """``NAME-own`` trains the peer under ``peers.RECIPES`` (MACE: float64, AMSGrad, stage two;
    NequIP: its tutorial), and the row reports the better of the peer's two recipes."""
    md17, peers = _module("md17"), _module("peers")
    args = argparse.Namespace(weight_decay=0.0, ema_decay=0.99, loss_weights=[1.0, 10.0])
    assert md17.model_recipe("mace-own", args) == peers.MACE_RECIPE
    assert peers.MACE_RECIPE.dtype == "float64" and peers.MACE_RECIPE.optimizer == "amsgrad"
    assert peers.MACE_RECIPE.weights(stage_two=True) == {"energy": 1000.0, "forces": 100.0}
    assert md17.model_recipe("mace", args).loss_weights == (1.0, 10.0)
    path = _md17_file(tmp_path / "a.json", "uracil", {"equivar": 10.0, "mace": 40.0,
                                                       "mace-own": 30.0})
    out = tmp_path / "all.json"
    md17.main(["--merge", path, "--json", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row["mace best F"] == 30.0 and row["F mace-own/equivar"] == 3.0
