"""The fused CPU backend (C, compiled on first use) equals the e3nn reference: value, gradient and
second derivatives in float32 and float64, odd sizes, isolated nodes, empty and unsorted edge
sets, uniform and mixed multiplicities, several threads (potential-level tests: test_dense.py);
"auto" picks it on CPU, and a missing compiler or a traced model falls back to "dense" with a
warning / silently, never to a wrong answer."""

from pathlib import Path

import pytest
import torch

from equivar.kernels import cpu_fused, dispatch
from equivar.kernels.fused import fused_conv
from equivar.kernels.layout import edge_layout
from equivar.kernels.spec import ConvSpec
from equivar.models import build
from tests.kernels.conftest import (
    assert_close,
    assert_matches_reference,
    make_tp,
)
from tests.kernels.test_dispatch import TINY
from tests.kernels.test_fused import SPECS, _inputs, _reference

SPECS = {**SPECS, "uniform32": ("32x0e+32x1o+32x2e", 2, ("0e", "1o", "2e"))}


@pytest.fixture(autouse=True)
def _needs_compiler(monkeypatch):
    ok, why = cpu_fused.available()
    if not ok:
        pytest.skip(why)
    monkeypatch.setattr(dispatch, "_warned", set())


def _conv(spec, x, y, w, index, n):
    return fused_conv(spec, x, y, w, edge_layout(index, n), engine=cpu_fused)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_value_gradient_and_second_derivatives(name, dtype):
    irreps, lmax, keep = SPECS[name]
    tp = make_tp(irreps, lmax, keep, dtype)
    spec = ConvSpec.from_e3nn(tp)
    n, e = 7, 13
    (x, y, w), index = _inputs(tp, n, e, dtype)
    got = _conv(spec, x, y, w, index, n)
    want = _reference(tp, x, y, w, index, n)
    assert torch.all(got[n - 1] == 0), "an isolated node must receive exactly zero"
    assert_matches_reference(got, want, (x, y, w), dtype)


def test_several_threads_give_the_same_numbers():
    tp = make_tp(*SPECS["uniform32"])
    spec = ConvSpec.from_e3nn(tp)
    (x, y, w), index = _inputs(tp, 40, 3000, torch.float64, seed=3)  # above PARALLEL_MIN_WORK
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.autograd.grad(_conv(spec, x, y, w, index, 40).square().sum(), (x, y, w))
        torch.set_num_threads(2)
        two = torch.autograd.grad(_conv(spec, x, y, w, index, 40).square().sum(), (x, y, w))
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)  # rows are owned by one thread each: deterministic sums


def test_empty_edge_set_and_edge_order():
    tp = make_tp(*SPECS["uniform"])
    spec = ConvSpec.from_e3nn(tp)
    kw = {"dtype": torch.float64, "requires_grad": True}
    x = torch.randn(4, tp.irreps_in1.dim, **kw)
    y = torch.zeros(0, tp.irreps_in2.dim, **kw)
    w = torch.zeros(0, tp.weight_numel, **kw)
    out = _conv(spec, x, y, w, torch.zeros(2, 0, dtype=torch.long), 4)
    assert out.shape == (4, spec.out_dim) and torch.all(out == 0)
    gx, gy, gw = torch.autograd.grad(out.sum(), (x, y, w))
    assert torch.all(gx == 0) and gy.shape == y.shape and gw.shape == w.shape

    tp = make_tp(*SPECS["mixed"])
    spec = ConvSpec.from_e3nn(tp)
    (x, y, w), index = _inputs(tp, 6, 20, torch.float64, seed=5, isolated=False)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(2))
    a = _conv(spec, x, y, w, index, 6)
    b = _conv(spec, x, y[perm], w[perm], index[:, perm], 6)
    assert_close(a, b, torch.float64, "permuted edges")


def test_wrong_device_or_dtype_is_an_error():
    tp = make_tp(*SPECS["uniform"])
    spec = ConvSpec.from_e3nn(tp)
    (x, y, w), index = _inputs(tp, 5, 9, torch.float64)
    with pytest.raises(ValueError, match="float32/float64 CPU tensors"):
        cpu_fused.evaluate(spec, 0, [None, x.detach().int(), y, w], edge_layout(index, 5))


def test_auto_is_fused_cpu_on_cpu_and_the_repr_says_so():
    model = build("potential", **TINY, dtype="float64")
    conv = model.backbone.blocks[0].conv
    assert conv.backend == "auto" and conv.resolved_backend(torch.device("cpu")) == "fused_cpu"
    assert "backend=auto->fused_cpu on cpu" in repr(conv)


def test_without_a_compiler_auto_warns_and_runs_dense(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_fused, "_state", {})
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("EQUIVAR_CACHE", str(tmp_path))
    ok, why = cpu_fused.available()
    assert not ok and "no C compiler" in why
    with pytest.warns(dispatch.BackendFallbackWarning, match="'dense' backend runs"):
        assert dispatch.resolve("auto", torch.device("cpu")) == "dense"
    with pytest.warns(dispatch.BackendFallbackWarning, match="'fused_cpu' requested"):
        assert dispatch.resolve("fused_cpu", torch.device("cpu")) == "e3nn"


def test_the_library_is_cached_and_a_broken_cache_entry_is_rebuilt(tmp_path):
    import os
    import subprocess
    import sys

    code = ("from equivar.kernels import cpu_fused; ok, why = cpu_fused.available(); "
            "assert ok, why")  # fmt: skip
    env = {**os.environ, "EQUIVAR_CACHE": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    (built,) = tmp_path.glob("cpu_fused_*.so")  # one file, no temporary left behind
    assert list(tmp_path.iterdir()) == [built]
    stamp = built.stat().st_mtime_ns
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert built.stat().st_mtime_ns == stamp  # reused, not rebuilt
    built.write_bytes(b"truncated")  # e.g. a disk that filled up under another process
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert built.stat().st_size > 1000  # the unloadable file was replaced by a fresh build


def test_traced_models_run_dense():
    from torch.fx.experimental.proxy_tensor import make_fx

    seen = []

    def f(x):
        seen.append(dispatch.resolve("auto", x.device))
        return x * 2

    make_fx(f)(torch.ones(2))
    assert seen == ["dense"]
    assert dispatch.resolve("auto", torch.device("cpu")) == "fused_cpu"


def test_an_unwritable_cache_falls_back_to_a_private_temporary_folder(tmp_path):
    """A read-only home or an ``EQUIVAR_CACHE`` that cannot be a folder must not cost the fast
    backend (nor crash ``resolve``): the library is built in a per-user temporary folder."""
    import os
    import subprocess
    import sys

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    code = ("from equivar.kernels import cpu_fused; ok, why = cpu_fused.available(); "
            "assert ok, why; print(cpu_fused._private_tmp_dir())")  # fmt: skip
    env = {**os.environ, "EQUIVAR_CACHE": str(blocker / "cache"), "TMPDIR": str(scratch)}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    folder = Path(run.stdout.strip())
    assert folder.parent == scratch and len(list(folder.glob("cpu_fused_*.so"))) == 1
    assert folder.stat().st_mode & 0o077 == 0  # closed to other users


def test_a_private_folder_open_to_others_is_not_trusted(monkeypatch, tmp_path):
    folder = tmp_path / "equivar-shared"
    folder.mkdir()
    folder.chmod(0o777)
    monkeypatch.setattr(cpu_fused, "_cache_dir", lambda: tmp_path / "a-file" / "cache")
    monkeypatch.setattr(cpu_fused, "_private_tmp_dir", lambda: folder)
    (tmp_path / "a-file").write_text("")
    (folder / "cpu_fused_x.so").write_bytes(b"planted")
    path, why = cpu_fused._library_path("cpu_fused_x.so", set())
    assert path is None and "can be written" in why
