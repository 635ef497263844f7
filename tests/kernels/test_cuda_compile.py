"""The Triton kernels compile for an H100 (sm_90) on a machine without a GPU: Triton's
ahead-of-time path to PTX and machine code, in a subprocess with the interpreter off. Catches
compile errors and register spills that the CPU interpreter cannot see."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, sys, torch
from equivar.nn.conv import TensorProductConv
from equivar.kernels.triton_conv import compile_for_cuda
mul, dtype, names = int(sys.argv[1]), getattr(torch, sys.argv[2]), sys.argv[3].split(",")
irreps = f"{mul}x0e+{mul}x1o+{mul}x2e"
conv = TensorProductConv(irreps, "1x0e+1x1o+1x2e+1x3o", irreps, 8)
print(json.dumps(compile_for_cuda(conv.spec, dtype, arch=90, kernels=tuple(names))))
"""

ALL = "receiver_kernel,sender_kernel,edge_kernel_y,edge_kernel_w,edge_kernel_yw"


def _compile(mul, dtype, names, tmp_path):
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1",
           "EQUIVAR_CACHE": str(tmp_path), "TRITON_CACHE_DIR": str(tmp_path / "triton")}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(mul), dtype, names], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_forward_and_fused_backward_compile_for_sm90_without_spills(tmp_path):
    report = _compile(32, "float32", "receiver_kernel,edge_kernel_yw", tmp_path)
    assert set(report) == {"receiver_kernel", "edge_kernel_yw"}
    for name, summary in report.items():
        if summary:  # ptxas ran: no register spills in the hot loop
            assert "0 bytes spill stores" in summary, f"{name}: {summary}"


@pytest.mark.slow
@pytest.mark.parametrize("mul,dtype", [(32, "float32"), (128, "float32"), (32, "float64")])
def test_every_kernel_compiles_for_sm90(mul, dtype, tmp_path):
    report = _compile(mul, dtype, ALL, tmp_path)
    assert set(report) == set(ALL.split(","))
    for name, summary in report.items():
        if summary:
            assert "0 bytes spill stores" in summary, f"{name}: {summary}"
