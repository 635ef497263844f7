"""The calculator reads checkpoints {state_dict, config, versions} safely, with clear errors."""

import pytest
import torch

from equivar.simulate import EquivarCalculator

from .conftest import tiny_potential


def save_checkpoint(model, path):
    """A checkpoint in the trainer's format (``equivar.train`` writes the same dict)."""
    torch.save({"state_dict": model.state_dict(), "config": dict(model.config),
                "versions": {"torch": str(torch.__version__)}}, path)  # fmt: skip
    return path


def test_checkpoint_gives_the_same_numbers(tmp_path, ethanol):
    model = tiny_potential(seed=4)
    path = save_checkpoint(model, tmp_path / "model.pt")
    from_file, from_model = EquivarCalculator(str(path)), EquivarCalculator(model)
    assert from_file.dtype == torch.float64
    e_file = from_file.get_potential_energy(ethanol.copy())
    assert e_file == pytest.approx(from_model.get_potential_energy(ethanol.copy()), abs=1e-12)
    as_float32 = EquivarCalculator(path, dtype="float32")  # rebuilt in float32, not cast
    assert as_float32.dtype == torch.float32
    assert as_float32.get_potential_energy(ethanol.copy()) == pytest.approx(e_file, abs=1e-4)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        EquivarCalculator(tmp_path / "nothing.pt")


def test_truncated_file(tmp_path):
    path = save_checkpoint(tiny_potential(), tmp_path / "model.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        EquivarCalculator(path)


def test_pickled_module_is_refused_as_unsafe(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save(tiny_potential(), path)  # a whole module: would need unsafe unpickling
    with pytest.raises(ValueError, match="unsafe"):
        EquivarCalculator(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"state_dict": {}}, "missing.*config"),
        ([1, 2, 3], "holds a list"),
        ({"state_dict": {}, "config": {"name": "property"}}, "'property' model"),
        ({"state_dict": {}, "config": {"name": "potential", "species": [1]}}, "state_dict"),
    ],
)
def test_wrong_content_is_named(tmp_path, content, match):
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=match):
        EquivarCalculator(path)
