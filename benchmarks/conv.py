"""The tensor-product convolution on each backend: forward and forward+backward time, memory,
and the full potential's training step (energy + forces in the loss).

The op (issue 7's protocol): node features ``MUL x (0e+1o+2e)``, edge spherical harmonics
``l <= 3``, channel-wise 'uvu' tensor product with per-edge weights, gather by sender, sum onto
receivers, outputs filtered to 0e/1o/2e. Inputs are random; receivers are sorted, as equivar's
neighbour lists are (the CSR layout is built once per graph and timed on its own, because every
layer and the backward pass reuse it). "fwd+bwd" is the forward plus gradients for node features,
harmonics and weights. The memory floor is the bytes every implementation must move at least
once (inputs, per-edge weights, output) over the device's bandwidth.

    python benchmarks/conv.py                      # CUDA when present: the three issue rows
    python benchmarks/conv.py --device cpu --scale 0.05 --json out.json
    python benchmarks/conv.py --quick              # tiny sizes (smoke test)

Backends: e3nn (reference), dense (all paths as stacked dense contractions in plain torch),
fused_cpu (the fused C kernel: the CPU default), triton (CUDA only; on CPU it runs in Triton's
interpreter, which is a correctness tool, not timed), cuequivariance (when installed; on CPU its
plain-torch method).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware, median_time, print_table, silicon, standard_parser, write_json  # noqa: E402,E501

from equivar.kernels import dispatch  # noqa: E402
from equivar.kernels.layout import edge_layout  # noqa: E402
from equivar.nn.conv import TensorProductConv  # noqa: E402

ROWS = [(32, 10_000, 300_000), (64, 10_000, 300_000), (128, 5_000, 150_000)]
QUICK_ROWS = [(8, 200, 3_000), (16, 100, 1_500)]


def _graph(n_nodes: int, n_edges: int, device, gen):
    receiver = torch.sort(torch.randint(0, n_nodes, (n_edges,), generator=gen)).values
    sender = torch.randint(0, n_nodes, (n_edges,), generator=gen)
    return torch.stack([sender, receiver]).to(device)


def _backends(device: torch.device, asked: list[str] | None) -> list[str]:
    if asked:
        return asked
    status = dispatch.availability()
    names = ["e3nn", "dense"]
    if device.type == "cpu" and status["fused_cpu"][0]:
        names.append("fused_cpu")
    if device.type == "cuda" and status["triton"][0]:
        names.append("triton")
    if status["cuequivariance"][0]:
        names.append("cuequivariance")
    return names


def conv_rows(args, device, dtype) -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    sizes = QUICK_ROWS if args.quick else ROWS
    for mul, n_nodes, n_edges in sizes:
        n_nodes = max(2, round(n_nodes * args.scale))
        n_edges = max(1, round(n_edges * args.scale))
        irreps = f"{mul}x0e+{mul}x1o+{mul}x2e"
        conv = TensorProductConv(irreps, "1x0e+1x1o+1x2e+1x3o", irreps, num_radial=8)
        spec = conv.spec
        edge_index = _graph(n_nodes, n_edges, device, gen)
        x = torch.randn(n_nodes, spec.in_dim, generator=gen).to(device, dtype)
        vec = torch.randn(n_edges, 3, generator=gen)
        from e3nn import o3

        y = o3.spherical_harmonics(conv.irreps_sh, vec, normalize=True).to(device, dtype)
        w = torch.randn(n_edges, spec.weight_numel, generator=gen).to(device, dtype)
        tp = conv.tp.to(device, dtype)
        t_layout, layout = median_time(lambda ei=edge_index, n=n_nodes: edge_layout(ei, n),
                                       args.repeats, device=device)
        item = dtype.itemsize
        floor_bytes = item * (x.numel() + y.numel() + w.numel() + n_nodes * spec.out_dim)
        floor_bytes += 4 * 2 * n_edges  # int32 sender and receiver
        for backend in _backends(device, args.backends):
            if backend == "e3nn":
                from equivar.nn.scatter import scatter_sum

                def op(x, y, w, tp=tp, ei=edge_index, n=n_nodes):
                    return scatter_sum(tp(x[ei[0]], y, w), ei[1], n)
            else:
                def op(x, y, w, backend=backend, spec=spec, layout=layout):
                    out = dispatch.conv(spec, x, y, w, layout, backend)
                    if out is None:
                        raise RuntimeError(f"{backend} failed its self-check (see the warning)")
                    return out

            with torch.no_grad():
                t_fwd, out = median_time(lambda op=op, x=x, y=y, w=w: op(x, y, w), args.repeats,
                                         device=device)
            xg, yg, wg = (t.clone().requires_grad_() for t in (x, y, w))
            cot = torch.randn_like(out)

            def fwd_bwd(op=op, xg=xg, yg=yg, wg=wg, cot=cot):
                return torch.autograd.grad(op(xg, yg, wg), (xg, yg, wg), cot)

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            t_fb, _ = median_time(fwd_bwd, args.repeats, device=device)
            row = {
                "mul": mul, "nodes": n_nodes, "edges": n_edges, "backend": backend,
                "fwd_ms": 1e3 * t_fwd, "fwd_bwd_ms": 1e3 * t_fb, "layout_ms": 1e3 * t_layout,
                "floor_MB": floor_bytes / 1e6,
            }
            if device.type == "cuda":
                row["floor_ms"] = 1e3 * floor_bytes / (args.bandwidth_gbs * 1e9)
                row["peak_MB"] = (torch.cuda.max_memory_allocated(device) - base) / 1e6
            rows.append(row)
            print(f"  mul={mul} {backend}: fwd {1e3 * t_fwd:.2f} ms, fwd+bwd {1e3 * t_fb:.2f} ms",
                  flush=True)
    return rows


def training_rows(args, device, dtype) -> list[dict]:
    """One optimiser step of the potential on energy + forces (the convolution differentiated
    twice), per backend, on rattled silicon."""
    from torch_geometric.data import Batch

    from equivar.data import from_ase
    from equivar.models import build

    n_atoms = 64 if args.quick else args.train_atoms
    data = from_ase(silicon(n_atoms), cutoff=5.0, dtype=dtype)
    batch = Batch.from_data_list([data]).to(device)
    rows = []
    reference = None
    for backend in _backends(device, args.backends):
        torch.manual_seed(0)
        model = build("potential", preset=args.preset, species=[14], cutoff=5.0,
                      backend=backend, dtype=dtype).to(device)
        if reference is None:
            reference = model.state_dict()
        model.load_state_dict(reference)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        target_e = torch.zeros(1, device=device, dtype=dtype)
        target_f = torch.zeros(batch.num_nodes, 3, device=device, dtype=dtype)

        def step(model=model, opt=opt, target_e=target_e, target_f=target_f):
            opt.zero_grad(set_to_none=True)
            out = model(batch)
            loss = (out["energy"] - target_e).square().mean()
            loss = loss + (out["forces"] - target_f).square().mean()
            loss.backward()
            opt.step()
            return loss

        t, _ = median_time(step, args.repeats, warmup=2, device=device)
        rows.append({"model": f"potential {args.preset}", "atoms": batch.num_nodes,
                     "edges": batch.edge_index.shape[1], "backend": backend,
                     "train_step_ms": 1e3 * t})
        print(f"  training step {backend}: {1e3 * t:.1f} ms", flush=True)
    base = next(r["train_step_ms"] for r in rows if r["backend"] == "e3nn")
    for r in rows:
        r["speedup_vs_e3nn"] = base / r["train_step_ms"]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     parents=[standard_parser()])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--backends", nargs="+", default=None, choices=list(dispatch.BACKENDS))
    parser.add_argument("--scale", type=float, default=None,
                        help="multiply nodes and edges of each row (default 1 on CUDA, 0.05 "
                             "on CPU)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's; 1 on a shared CPU, where "
                        "spinning threads of two processes slow each other down)")
    parser.add_argument("--bandwidth-gbs", type=float, default=3350.0,
                        help="device memory bandwidth for the floor (H100 SXM HBM3: 3350)")
    parser.add_argument("--preset", default="M", choices=["S", "M", "L"])
    parser.add_argument("--train-atoms", type=int, default=1000)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if args.scale is None:
        args.scale = 1.0 if device.type == "cuda" or args.quick else 0.05
    if args.repeats is None:
        args.repeats = 20 if device.type == "cuda" else 3
    if device.type == "cpu":
        warnings.filterwarnings("ignore", category=dispatch.BackendFallbackWarning)
    print(f"convolution benchmark on {hardware()} ({device}, {args.dtype}, scale {args.scale})")
    rows = conv_rows(args, device, dtype)
    print_table(rows)
    train = [] if args.skip_training else training_rows(args, device, dtype)
    if train:
        print_table(train)
    if args.json:
        write_json(args.json, "conv", rows + train)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
