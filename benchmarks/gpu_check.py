"""The GPU check in one command: every open GPU number (issue 22) from one call of a lent machine.

A lent GPU machine (``/work/.library/device/README.md``) gives 15 minutes in all, machine start
included, at most 10 minutes a command, no network, and carries at most 64 MiB of files; the
command runs in a copy of the working tree and what it writes to ``$OUT`` comes back. So this
script does everything in ONE command under a wall-clock limit, in this order:

1. ``install``: unpack the carried wheels (``.whl/``) into a private site folder (``pip install
   --no-index --no-deps --target``; the large cuEquivariance ops wheels travel as one xz tar);
2. ``gpu``: ``nvidia-smi``;
3. ``pytest``: ``pytest -m gpu -q`` on the test files that hold GPU tests;
4. ``env``: torch, CUDA and the convolution backends as the benchmarks see them;
5. ``conv``: ``conv.py``'s three rows (32/64/128 channels), e3nn vs ours vs cuEquivariance,
   forward and forward+backward;
6. ``train``: ``train_speed.py``'s training step, presets S and M on aspirin and EMT: ours, the
   e3nn backend, and MACE (molecules, when mace-torch is there);
7. ``md``: ``md_speed.py``'s MD steps/s at 10^3 and 10^4 atoms.

Steps 4-7 run in a child process that the script stops when a step passes its cap (``--cap``) or
the run passes ``--time-limit``; a step that fails or dies is recorded and the child restarts for
the next one; steps with no time left are "skipped: time limit". ``$OUT/gpu_check.json``
(``write_json``: hardware, versions, one row per step with its status, seconds, reason, notes
and rows) is rewritten after every step, so a run stopped from outside keeps what finished, and
``$OUT/gpu_check.log`` holds all the output. One summary table is printed last.

Here, once (pip's index; ~4 minutes on 2 busy cores, most of it xz; 30 MiB land in ``.whl/``)::

    python benchmarks/gpu_check.py prepare

There, one call of the device tool (command, carry, timeout_s)::

    run(command="python3 benchmarks/gpu_check.py run --time-limit 450",
        carry=[".whl"], timeout_s=510)

With the machine still warm, a second call may redo a part (the site folder is reused), e.g.
``python3 benchmarks/gpu_check.py run --steps install conv --time-limit 200``.

Without CUDA, or with ``--dry-run``, the same steps run at toy sizes on the CPU (one thread;
pytest on one GPU test file, whose tests skip), so the script cannot rot while no GPU is at
hand (``tests/test_gpu_check.py`` runs it)::

    python benchmarks/gpu_check.py run --dry-run --json /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import key_value, print_table, standard_parser, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

STEPS = ("install", "gpu", "pytest", "env", "conv", "train", "md")
CHILD_STEPS = ("env", "conv", "train", "md")
#: default caps (seconds) of each step; the sum of those after install stays under 450 s
CAPS = {"install": 60, "gpu": 20, "pytest": 100, "env": 30, "conv": 110, "train": 150, "md": 60}
#: modules a step cannot start without (they come from the carried wheels on the GPU image)
NEEDS = {"conv": ("ase",), "train": ("ase", "vesin"), "md": ("ase", "vesin")}
RESERVE_S = 8.0  # kept back from --time-limit for the last JSON and the table
MIN_START_S = 3.0  # a step does not start with less time than this left
PACKED = "cueq-ops.tar.xz"  # the large ops wheels, unpacked and xz-compressed together
SITE = "/tmp/gpu_check_site"

# ---------------------------------------------------------------------------------------------
# prepare (here)


def carried(cuda: str, mace: bool) -> list[tuple[str, str, bool]]:
    """``(pip requirement, part, pack)`` of every wheel the GPU image lacks. The image has torch
    2.11+cu130, e3nn, torch-geometric, numpy, scipy, pyyaml, h5py, tqdm, matplotlib, pandas,
    torchmetrics and pytest (KINDS.md); e3nn is pinned to the version tested here. ``pack``:
    the two ops wheels (74 MB as wheels, 27 MB as one xz tar)."""
    wheels = [
        ("ase==3.29.0", "equivar", False),
        ("vesin==0.6.2", "equivar", False),
        ("e3nn==0.6.0", "equivar", False),
        ("cuequivariance==0.13.0", "cuequivariance", False),
        ("cuequivariance-torch==0.13.0", "cuequivariance", False),
        ("platformdirs==4.14.9", "cuequivariance", False),
        (f"cuequivariance-ops-cu{cuda}==0.13.0", "cuequivariance", True),
        (f"cuequivariance-ops-torch-cu{cuda}==0.13.0", "cuequivariance", True),
    ]
    if mace:  # `import mace.modules` needs torch-ema beyond the image (peers.py)
        wheels += [("mace-torch==0.3.16", "mace", False), ("torch-ema==0.3", "mace", False)]
    return wheels


def _ignore(folder: Path) -> None:
    """List ``folder`` in ``.git/info/exclude`` (it is in .gitignore too) so it never travels
    as a tracked file, only through ``carry``."""
    info = ROOT / ".git" / "info"
    if not info.is_dir() or ROOT not in folder.resolve().parents:
        return
    line = f"/{folder.resolve().relative_to(ROOT)}/"
    exclude = info / "exclude"
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if line not in lines:
        with exclude.open("a") as f:
            f.write(f"{line}\n")


def pack_wheels(wheels: list[Path], path: Path) -> None:
    """Unpack ``wheels`` into one folder tree (what ``pip install --target`` makes of them: no
    ``.data`` folders in these) and write it as an xz tar at ``path`` (``xz -9 -T0`` when
    installed, else Python's lzma). Zip-deflated shared libraries shrink from 74 MB to 27 MB."""
    with tempfile.TemporaryDirectory() as stage:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as z:
                for info in z.infolist():
                    z.extract(info, stage)
                    mode = info.external_attr >> 16
                    if mode and not info.is_dir():
                        os.chmod(Path(stage) / info.filename, mode & 0o755)
        entries = sorted(os.listdir(stage))
        xz = shutil.which("xz")
        if xz is None:
            with tarfile.open(path, "w:xz", preset=9) as tar:
                for entry in entries:
                    tar.add(Path(stage) / entry, arcname=entry)
            return
        with open(path, "wb") as out:
            proc = subprocess.Popen([xz, "-9", "-T0", "-c"], stdin=subprocess.PIPE, stdout=out)
            with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
                for entry in entries:
                    tar.add(Path(stage) / entry, arcname=entry)
            proc.stdin.close()
            if proc.wait() != 0:
                raise RuntimeError(f"xz failed with exit code {proc.returncode}")


def _download(spec: str, dest: Path, python_version: str) -> tuple[Path | None, str]:
    """``pip download`` one wheel for the GPU image (CPython ``python_version``, x86_64
    manylinux); returns ``(wheel, "")`` or ``(None, why)``."""
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
                 "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", "-d", str(dest),
           *(a for p in platforms for a in ("--platform", p)), spec]  # fmt: skip
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return None, "pip download took over 10 minutes"
    found = sorted(dest.glob("*.whl"))
    if run.returncode != 0 or not found:
        lines = [ln for ln in run.stderr.splitlines() if ln.strip() and "is ignored" not in ln]
        return None, lines[-1].strip() if lines else f"pip exit code {run.returncode}"
    return found[0], ""


def prepare(args) -> int:
    """Fetch the wheels of :func:`carried` into ``args.wheels`` with a ``manifest.json``;
    return 1 when one could not be fetched or the folder is over ``--max-mib``."""
    dest = Path(args.wheels)
    dest = dest if dest.is_absolute() else ROOT / dest
    dest.mkdir(parents=True, exist_ok=True)
    _ignore(dest)
    for old in [*dest.glob("*.whl"), *dest.glob("*.tar.xz"), dest / "manifest.json"]:
        old.unlink(missing_ok=True)  # one version of each package, or pip refuses them all
    fetched, failed, to_pack = {}, {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (spec, part, pack) in enumerate(carried(args.cuda, not args.no_mace)):
            wheel, why = _download(spec, Path(tmp) / str(k), args.python_version)
            if wheel is None:
                failed[spec] = f"{part}: {why}"
                print(f"NOT FETCHED {spec} (part {part}): {why}", flush=True)
                continue
            fetched[spec] = wheel.name
            print(f"fetched {wheel.name} ({wheel.stat().st_size / 2**20:.1f} MiB)", flush=True)
            if pack:
                to_pack.append(wheel)
            else:
                shutil.move(wheel, dest / wheel.name)
        if to_pack:
            print(f"packing {', '.join(w.name for w in to_pack)} into {PACKED} (xz -9) ...",
                  flush=True)
            pack_wheels(to_pack, dest / PACKED)
    files = {p.name: p.stat().st_size for p in sorted(dest.iterdir()) if p.is_file()}
    total = sum(files.values()) / 2**20
    manifest = {"python_version": args.python_version, "cuda": args.cuda, "fetched": fetched,
                "packed": {PACKED: [w.name for w in to_pack]} if to_pack else {},
                "failed": failed, "files": files, "total_MiB": round(total, 1)}  # fmt: skip
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print_table([{"file": n, "MiB": round(b / 2**20, 2)} for n, b in files.items()])
    print(f"\n{dest}: {total:.1f} MiB in all (the working tree adds ~10 MiB; 64 MiB travel)")
    status = 0
    if failed:
        print("NOT FETCHED (the run skips what needs them and says so):")
        for spec, why in failed.items():
            print(f"  {spec}: {why}")
        status = 1
    if total > args.max_mib:
        print(f"TOO BIG: {total:.1f} MiB > {args.max_mib} MiB; try --no-mace")
        status = 1
    print('\nthere: run(command="python3 benchmarks/gpu_check.py run --time-limit 450", '
          f'carry=["{dest.relative_to(ROOT) if ROOT in dest.parents else dest}"], '
          "timeout_s=510)")
    return status


# ---------------------------------------------------------------------------------------------
# the child: env, conv, train, md in one process (imports paid once)


def _cuda_broken(exc: BaseException) -> bool:
    """True for errors after which the CUDA context is unusable (the child must restart)."""
    text = f"{type(exc).__name__}: {exc}"
    return any(s in text for s in ("AcceleratorError", "CUDA error", "cudaError",
                                   "illegal memory access", "device-side assert"))  # fmt: skip


class ChildStep:
    """What a step in the child reports through: rows, notes, errors of its pieces, and whether
    its time (its cap or the run's limit) is up."""

    def __init__(self, name: str, plan: dict, emit) -> None:
        self.name, self.plan, self._emit = name, plan, emit
        self.start = time.time()
        self.errors: list[str] = []
        self.stopped = ""
        self.work = Path(plan["work"])

    def time_left(self) -> float:
        return min(self.plan["deadline"], self.start + self.plan["caps"][self.name]) - time.time()

    def row(self, row: dict) -> None:
        self._emit("row", self.name, row=row)

    def note(self, text: str) -> None:
        self._emit("note", self.name, text=text)

    def pieces(self, items: list[tuple[str, object]]):
        """Yield ``(label, item)`` while time is left; note the ones left out."""
        for k, (label, item) in enumerate(items):
            if self.time_left() < self.plan["min_piece_s"]:
                self.stopped = "time limit before " + ", ".join(lbl for lbl, _ in items[k:])
                return
            yield label, item

    def script_rows(self, label: str, main, argv: list[str]) -> list[dict]:
        """Rows of a benchmark script's ``main(argv + --json)``; an error is noted and the step
        goes on, unless CUDA broke (then the child restarts)."""
        path = self.work / f"{self.name}-{re.sub(r'[^A-Za-z0-9]+', '_', label)}.json"
        path.unlink(missing_ok=True)
        print(f"\n[{self.name}] {label}: {' '.join(argv)}", flush=True)
        try:
            main([*argv, "--json", str(path)])
            return json.loads(path.read_text())["rows"]
        except Exception as exc:  # noqa: BLE001 (one piece failing must not stop the others)
            if _cuda_broken(exc):
                raise
            self.errors.append(f"{label}: {type(exc).__name__}: {exc}")
            self.note(f"error in {label}: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            return []


def _threads(plan: dict) -> list[str]:
    return ["--threads", str(plan["threads"])] if plan["threads"] else []


def step_env(step: ChildStep) -> None:
    from importlib import metadata

    import torch

    from equivar.kernels import dispatch

    device = torch.device(step.plan["device"])
    rows = [("torch", torch.__version__), ("torch CUDA", torch.version.cuda or "-")]
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        rows += [("device", f"{p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, "
                            f"{p.total_memory / 2**30:.1f} GiB")]  # fmt: skip
    for dist in ("triton", "e3nn", "cuequivariance-ops-torch-cu13", "cuequivariance-ops-torch-cu12",
                 "mace-torch"):  # fmt: skip
        with contextlib.suppress(metadata.PackageNotFoundError):
            rows.append((dist, metadata.version(dist)))
    rows.append(("TRITON_INTERPRET", os.environ.get("TRITON_INTERPRET", "-")))
    rows.append(("ours (backend 'auto')", dispatch.resolve("auto", device)))
    for name, (ok, why) in dispatch.availability().items():
        rows.append((f"backend {name}", "usable" if ok else f"not usable: {why}"))
    for item, value in rows:
        step.row({"item": item, "value": str(value)})


def step_conv(step: ChildStep) -> None:
    import conv
    import torch

    from equivar.kernels import dispatch

    plan, device = step.plan, torch.device(step.plan["device"])
    ours = dispatch.resolve("auto", device)
    backends = ["e3nn", ours]
    ok, why = dispatch.availability()["cuequivariance"]
    if ok:
        backends.append("cuequivariance")
    else:
        step.note(f"cuequivariance left out: {why}{plan['not_carried'].get('cuequivariance', '')}")
    argv = ["--device", device.type, "--dtype", plan["dtype"], "--skip-training", *_threads(plan)]
    if plan["conv"]["scale"] is not None:
        argv += ["--scale", str(plan["conv"]["scale"])]
    if plan["conv"]["repeats"] is not None:
        argv += ["--repeats", str(plan["conv"]["repeats"])]
    if device.type == "cuda" and "H200" in torch.cuda.get_device_name(device):
        argv += ["--bandwidth-gbs", "4800"]  # H200 HBM3e (conv.py's default is the H100's)
    rows = list(conv.ROWS)
    items = [(f"mul={r[0]} {b}", (r, b)) for r in rows for b in backends]
    for label, (row, backend) in step.pieces(items):
        conv.ROWS = [row]  # one row per call, so rows arrive (and survive a stop) one by one
        try:
            for r in step.script_rows(label, conv.main, [*argv, "--backends", backend]):
                step.row({**r, "ours": backend == ours})
        finally:
            conv.ROWS = rows


def step_train(step: ChildStep) -> None:
    import train_speed

    plan, p = step.plan, step.plan["train"]
    mace = importlib.util.find_spec("mace") is not None
    if not mace:
        step.note("mace-torch not installed: no MACE rows" + plan["not_carried"].get("mace", ""))
    items = []
    for system in p["systems"]:
        for preset in p["presets"]:
            for variant in ("ours", "e3nn"):
                items.append((f"{system} {preset} {variant}", (system, preset, variant)))
    for label, (system, preset, variant) in step.pieces(items):
        models = ["equivar"]
        if mace and variant == "ours" and preset == p["presets"][0] and system != "emt":
            models.append("mace")  # the peers' wrappers return no stress: molecules only
        argv = ["--systems", system, "--presets", preset, "--batch-sizes", str(p["batch"]),
                "--steps", str(p["steps"]), "--warmup", str(p["warmup"]), "--device",
                plan["device"], "--dtype", plan["dtype"], "--models", *models, *_threads(plan)]
        if variant == "e3nn":
            argv += ["--option", "backend=e3nn"]
        for r in step.script_rows(label, train_speed.main, argv):
            r.pop("vs equivar", None)  # relative to this call's first row: meaningless here
            step.row({**r, "variant": "mace" if r["model"] == "mace" else variant})


def step_md(step: ChildStep) -> None:
    import md_speed

    plan, p = step.plan, step.plan["md"]
    argv = ["--device", plan["device"], "--dtype", plan["dtype"], "--atom-steps",
            str(p["atom_steps"]), "--min-steps", str(p["min_steps"]), "--warmup",
            str(p["warmup"]), "--skins", *map(str, p["skins"]), *_threads(plan)]  # fmt: skip
    for label, size in step.pieces([(f"{n} atoms", n) for n in p["sizes"]]):
        for r in step.script_rows(label, md_speed.main, [*argv, "--sizes", str(size)]):
            step.row(r)


CHILD_FUNCS = {"env": step_env, "conv": step_conv, "train": step_train, "md": step_md}


def child(args) -> int:
    """Run ``args.steps`` in order, reporting through the events file (one JSON a line)."""
    plan = json.loads(Path(args.plan).read_text())
    sys.path.insert(0, str(BENCH))
    if plan["threads"]:
        import torch

        torch.set_num_threads(plan["threads"])
    with open(args.events, "a", encoding="utf-8") as events:

        def emit(event: str, step: str, **fields) -> None:
            events.write(json.dumps({"event": event, "step": step, **fields}) + "\n")
            events.flush()

        for name in args.steps:
            left = plan["deadline"] - time.time()
            if left < plan["min_start_s"]:
                emit("skip", name, reason=f"skipped: time limit ({max(left, 0):.0f} s left)")
                continue
            emit("start", name)
            step = ChildStep(name, plan, emit)
            try:
                time.sleep(plan["sleep"].get(name, 0))  # tests: a step that overruns its cap
                CHILD_FUNCS[name](step)
            except Exception as exc:  # noqa: BLE001 (reported; the parent restarts the child)
                traceback.print_exc()
                emit("error", name, reason=f"{type(exc).__name__}: {exc}",
                     traceback=traceback.format_exc()[-4000:])  # fmt: skip
                return 3
            status = "timeout" if step.stopped else "error" if step.errors else "ok"
            emit("done", name, status=status, reason=step.stopped or "; ".join(step.errors))
    return 0


# ---------------------------------------------------------------------------------------------
# the parent: install, gpu, pytest; runs the child; writes the JSON and the table


class Check:
    """The run's record: one entry per step, the JSON rewritten after every change, every line
    of output echoed to the log."""

    def __init__(self, args, dry: bool, device: str, t0: float) -> None:
        self.t0 = t0  # the limit counts from the start of the run
        self.limit = float(args.time_limit)
        self.deadline = self.t0 + self.limit - min(RESERVE_S, 0.1 * self.limit)
        self.dry, self.device = dry, device
        self.caps = {**CAPS, **{k: float(v) for k, v in args.cap}}
        self.json = Path(args.json)
        self.json.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.json.with_suffix(".log"), "w", encoding="utf-8")  # noqa: SIM115
        self.lock = threading.Lock()
        self.steps = {n: {"step": n, "status": "pending", "seconds": None, "reason": None,
                          "what": "", "notes": [], "rows": []} for n in STEPS}  # fmt: skip
        self.started: dict[str, float] = {}

    def say(self, text: str = "") -> None:
        with self.lock:
            print(text, flush=True)
            self.log.write(text + "\n")
            self.log.flush()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def begin(self, name: str) -> None:
        self.started[name] = time.monotonic()
        self.steps[name]["status"] = "running"
        self.say(f"\n=== {name}: {self.steps[name]['what']} ({self.left():.0f} s left)")
        self.write()

    def finish(self, name: str, status: str, reason: str | None = None) -> None:
        rec = self.steps[name]
        rec["status"], rec["reason"] = status, reason or None
        if name in self.started:
            rec["seconds"] = round(time.monotonic() - self.started[name], 1)
        self.say(f"=== {name}: {status}" + (f" ({reason})" if reason else "")
                 + (f" in {rec['seconds']} s" if rec["seconds"] is not None else ""))
        self.write()

    def write(self) -> None:
        mode = "dry run on the CPU, toy sizes" if self.dry else f"device {self.device}"
        used = time.monotonic() - self.t0
        label = f"gpu_check ({mode}, time limit {self.limit:g} s, {used:.0f} s used)"
        write_json(self.json, label, [derive(rec) for rec in self.steps.values()])

    def stream(self, cmd: list[str], env: dict, limit, poll=None) -> tuple[int | None, list]:
        """Run ``cmd`` in its own process group, echoing its output, until it ends or
        ``time.monotonic()`` passes ``limit()`` (then it is stopped: exit code None)."""
        tail: collections.deque[str] = collections.deque(maxlen=300)
        group = {"process_group": 0} if sys.version_info >= (3, 11) else {
            "preexec_fn": os.setpgrp}  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                **group)  # fmt: skip

        def pump() -> None:
            for line in proc.stdout:
                self.say(line.rstrip("\n"))
                tail.append(line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        stopped = False
        try:
            while proc.poll() is None:
                if poll:
                    poll()
                if time.monotonic() > limit():
                    stopped = True
                    break
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                _kill_group(proc)
            reader.join(timeout=10)
        if poll:
            poll()
        return (None if stopped else proc.returncode), list(tail)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            return


def run_install(check: Check, args) -> list[str]:
    """Install the carried wheels; returns the folders to put first on the children's path."""
    wheels = Path(args.wheels)
    wheels = wheels if wheels.is_absolute() else ROOT / wheels
    if not wheels.is_dir() or not [*wheels.glob("*.whl"), *wheels.glob("*.tar.xz")]:
        check.finish("install", "skipped", f"skipped: no wheels in {wheels} (run `python "
                     "benchmarks/gpu_check.py prepare` and carry the folder): the machine's "
                     "own packages run")  # fmt: skip
        return []
    manifest_path = wheels / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for spec, why in manifest.get("failed", {}).items():
        check.steps["install"]["notes"].append(f"not carried: {spec} ({why})")
    files = sorted([*wheels.glob("*.whl"), *wheels.glob("*.tar.xz")])
    stamp = hashlib.sha256(repr([(f.name, f.stat().st_size) for f in files]).encode()).hexdigest()
    site = Path(args.site)
    if (site / ".gpu_check_stamp").exists() and (site / ".gpu_check_stamp").read_text() == stamp:
        check.steps["install"]["notes"].append(f"already installed in {site} (same wheels)")
    else:
        shutil.rmtree(site, ignore_errors=True)
        site.mkdir(parents=True)
        whls = [str(f) for f in files if f.suffix == ".whl"]
        if whls:
            cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                   "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site), *whls]
            code, tail = check.stream(cmd, dict(os.environ),
                                      lambda: min(check.deadline, check.started["install"]
                                                  + check.caps["install"]))  # fmt: skip
            if code != 0:
                check.finish("install", "error", f"pip install: exit {code}: " + " | ".join(
                    tail[-3:]))  # fmt: skip
                return []
        for tar in (f for f in files if f.name.endswith(".tar.xz")):
            with tarfile.open(tar, "r:xz") as t:
                if hasattr(tarfile, "data_filter"):
                    t.extractall(site, filter="data")
                else:  # Python < 3.11.4
                    t.extractall(site)  # noqa: S202 (our own archive, made by prepare)
        (site / ".gpu_check_stamp").write_text(stamp)
    packed = {n for names in manifest.get("packed", {}).values() for n in names}
    for info in sorted(site.glob("*.dist-info")):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        origin = next((PACKED for w in packed if w.startswith(f"{name}-{version}-")), "wheel")
        check.steps["install"]["rows"].append({"package": name, "version": version,
                                               "from": origin})  # fmt: skip
    if check.dry:
        check.steps["install"]["notes"].append(
            f"dry run: installed into {site} as on the GPU, but this machine's own packages run "
            "the steps (the carried ones are built for the GPU image)")
        check.finish("install", "ok")
        return []
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    check.finish("install", "ok")
    return [str(site)]


def run_gpu(check: Check) -> None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        check.finish("gpu", "skipped", "skipped: no nvidia-smi on this machine")
        return
    fields = "name,memory.total,driver_version,clocks.max.sm,power.limit"
    try:
        query = subprocess.run([smi, f"--query-gpu={fields}", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        full = subprocess.run([smi], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        check.finish("gpu", "error", f"nvidia-smi: {exc}")
        return
    check.say(full.stdout.rstrip())
    if query.returncode != 0:
        check.finish("gpu", "error", f"nvidia-smi exit {query.returncode}: {query.stderr.strip()}")
        return
    for k, line in enumerate(query.stdout.strip().splitlines()):
        values = [v.strip() for v in line.split(",")]
        check.steps["gpu"]["rows"].append({"gpu": k, **dict(zip(fields.split(","), values,
                                                                strict=False))})  # fmt: skip
    check.finish("gpu", "ok")


def gpu_test_paths() -> list[str]:
    """The test files marked ``gpu`` (a conftest.py with the mark brings its whole folder)."""
    folders, files = set(), set()
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if "mark.gpu" not in path.read_text(encoding="utf-8", errors="replace"):
            continue
        rel = path.relative_to(ROOT)
        (folders.add(str(rel.parent)) if path.name == "conftest.py" else files.add(str(rel)))
    files = {f for f in files if not any(f.startswith(d + "/") for d in folders)}
    return sorted(folders | files)


_PYTEST_KEYS = ("passed", "failed", "skipped", "error", "deselected", "xfailed", "xpassed")


def _pytest_counts(lines: list[str]) -> dict[str, int]:
    """Counts from pytest's summary line, or from its progress dots when it was stopped."""
    for line in reversed(lines):
        found = re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)",
                           line)  # fmt: skip
        if found and re.search(r" in [\d.]+s", line):
            counts = dict.fromkeys(_PYTEST_KEYS[:4], 0)
            counts.update({("error" if w.startswith("error") else w): int(n) for n, w in found})
            return counts
    progress = {".": "passed", "F": "failed", "s": "skipped", "E": "error"}
    counts = dict.fromkeys(_PYTEST_KEYS[:4], 0)
    for line in lines:
        m = re.fullmatch(r"([.FsExX]+)\s*(\[\s*\d+%\])?", line.strip())
        for ch in m.group(1) if m else "":
            if ch in progress:
                counts[progress[ch]] += 1
    return counts


def run_pytest(check: Check, env: dict, paths: list[str]) -> None:
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
           "--continue-on-collection-errors", *paths]  # fmt: skip
    check.say(" ".join(cmd[1:]))
    code, tail = check.stream(cmd, env, lambda: min(check.deadline, check.started["pytest"]
                                                    + check.caps["pytest"]))  # fmt: skip
    rec = check.steps["pytest"]
    counts = _pytest_counts(tail)
    rec["rows"].append({**counts, "exit": code})
    rec["notes"] += [ln for ln in tail if ln.startswith(("FAILED ", "ERROR "))][:30]
    if code is None:
        why = "cap" if time.monotonic() < check.deadline else "time limit"
        check.finish("pytest", "timeout", f"stopped at the {why} (counts from its progress)")
    elif code in (0, 5):  # 5: nothing collected
        check.finish("pytest", "ok")
    else:
        check.finish("pytest", "error", f"pytest exit {code}: {counts['failed']} failed, "
                     f"{counts['error']} errors")  # fmt: skip


def run_children(check: Check, names: list[str], plan: dict, env: dict) -> None:
    """Run the child steps ``names``, restarting the child after a step that failed, died or
    was stopped, until none is left or the time is up."""
    pending = list(names)
    for launch in range(len(names) + 1):
        if not pending:
            return
        if check.left() < MIN_START_S:
            break
        plan["deadline"] = time.time() + check.left()
        plan_path = Path(plan["work"]) / "plan.json"
        plan_path.write_text(json.dumps(plan))
        events = Path(plan["work"]) / f"events{launch}.jsonl"
        state = {"current": None, "offset": 0, "seen": False}

        def poll(events=events, state=state) -> None:
            if not events.exists():
                return
            with open(events, encoding="utf-8") as f:
                f.seek(state["offset"])
                chunk = f.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            state["offset"] += len(complete.encode())
            for line in complete.splitlines():
                ev = json.loads(line)
                name, rec, kind = ev["step"], check.steps[ev["step"]], ev["event"]
                state["seen"] = True
                if kind == "start":
                    state["current"] = name
                    check.begin(name)
                elif kind == "row":
                    rec["rows"].append(ev["row"])
                elif kind == "note":
                    rec["notes"].append(ev["text"])
                    check.say(f"[{name}] note: {ev['text']}")
                elif kind in ("done", "error", "skip"):
                    if kind == "error":
                        rec["traceback"] = ev["traceback"]
                    status = {"done": ev.get("status"), "error": "error", "skip": "skipped"}[kind]
                    state["current"] = None
                    pending.remove(name)
                    check.finish(name, status, ev.get("reason"))

        def limit(state=state) -> float:
            current = state["current"]
            if current is None:
                return check.deadline
            return min(check.deadline, check.started[current] + check.caps[current])

        cmd = [sys.executable, str(Path(__file__).resolve()), "child", "--plan", str(plan_path),
               "--events", str(events), *pending]  # fmt: skip
        code, tail = check.stream(cmd, env, limit, poll)
        current = state["current"]
        if current is not None:  # stopped, or died without a word (a crash in native code)
            rec = check.steps[current]
            rec["traceback"] = "\n".join(tail[-40:])
            pending.remove(current)
            if code is None:
                why = "cap" if time.monotonic() < check.deadline else "time limit"
                check.finish(current, "timeout", f"stopped at the {why} "
                             f"({check.caps[current]:g} s cap)")  # fmt: skip
            else:
                check.finish(current, "error", f"the child process died (exit {code})")
        elif code not in (0, None) and not state["seen"]:  # it cannot even start: give up
            for name in pending:
                check.steps[name]["traceback"] = "\n".join(tail[-40:])
                check.finish(name, "error", f"the child process failed before its first step "
                             f"(exit {code}): {tail[-1] if tail else ''}")  # fmt: skip
            return
    for name in pending:  # out of time (or of restarts, which the steps' events rule out)
        check.finish(name, "skipped", f"skipped: time limit ({max(check.left(), 0):.0f} s left)")


def make_plan(args, dry: bool, work: str, not_carried: dict) -> dict:
    """Sizes of every step: the issue's on the GPU, toy ones in a dry run."""
    plan = {"work": work, "dtype": args.dtype, "min_start_s": MIN_START_S, "sleep": {},
            "caps": {}, "not_carried": not_carried}  # fmt: skip
    presets = args.presets or (["S"] if dry else ["S", "M"])
    if dry:
        plan.update(device="cpu", threads=1, min_piece_s=0.0, pytest=["tests/models/test_gpu.py"],
                    conv={"scale": 0.01, "repeats": 1},
                    train={"systems": ["aspirin", "emt"], "presets": presets, "batch": 2,
                           "steps": 1, "warmup": 0},
                    md={"sizes": [8, 64], "atom_steps": 16, "min_steps": 1, "warmup": 1,
                        "skins": [0.0, 1.0]})  # fmt: skip
    else:
        plan.update(device="cuda", threads=None, min_piece_s=5.0, pytest=gpu_test_paths(),
                    conv={"scale": None, "repeats": None},
                    train={"systems": ["aspirin", "emt"], "presets": presets,
                           "batch": args.batch_size, "steps": 20, "warmup": 5},
                    md={"sizes": [1000, 10_000], "atom_steps": 100_000, "min_steps": 10,
                        "warmup": 2, "skins": [0.0, 1.0]})  # fmt: skip
    return plan


def describe(plan: dict) -> dict[str, str]:
    t, m = plan["train"], plan["md"]
    conv = ("scale 0.01, 1 repeat" if plan["conv"]["scale"] else "full size, 20 repeats")
    return {
        "install": "the carried wheels into a private site folder (pip --no-index --target)",
        "gpu": "nvidia-smi",
        "pytest": "pytest -m gpu -q " + " ".join(plan["pytest"]),
        "env": "torch, CUDA and the convolution backends, as the benchmarks see them",
        "conv": f"conv.py rows (32/64/128 channels, {conv}): e3nn vs ours vs cuEquivariance, "
                "forward and forward+backward",
        "train": f"train_speed.py, presets {' '.join(t['presets'])} on {' and '.join(t['systems'])}"
                 f", batch {t['batch']}, {t['steps']} steps after {t['warmup']}: ours, the e3nn "
                 "backend, MACE",
        "md": f"md_speed.py, preset S, {' and '.join(map(str, m['sizes']))} atoms, skins "
              f"{' and '.join(map(str, m['skins']))} A",
    }  # fmt: skip


def derive(rec: dict) -> dict:
    """The step's record with ratios filled in (conv: x e3nn; train: x ours)."""
    rows = rec["rows"]
    if rec["step"] == "conv":
        base = {r["mul"]: r for r in rows if r.get("backend") == "e3nn"}
        for r in rows:
            if r["mul"] in base and "fwd_ms" in r:
                r["fwd_x_e3nn"] = round(base[r["mul"]]["fwd_ms"] / r["fwd_ms"], 2)
                r["fwd_bwd_x_e3nn"] = round(base[r["mul"]]["fwd_bwd_ms"] / r["fwd_bwd_ms"], 2)
    elif rec["step"] == "train":
        ours = {(r["system"], r["preset"], r["batch"]): r for r in rows if r["variant"] == "ours"
                and r["model"] == "equivar"}  # fmt: skip
        first = {}
        for (system, _, batch), r in ours.items():
            first.setdefault((system, batch), r)
        for r in rows:
            base = (first.get((r["system"], r["batch"])) if r["variant"] == "mace"
                    else ours.get((r["system"], r["preset"], r["batch"])))  # fmt: skip
            if base is not None:
                r["ms_x_ours"] = round(r["ms_per_step"] / base["ms_per_step"], 2)
    return rec


def summary(rec: dict) -> str:
    """One line of the final table."""
    rows, name = rec["rows"], rec["step"]
    text = ""
    if name == "install" and rows:
        text = f"{len(rows)} packages: " + ", ".join(f"{r['package']} {r['version']}"
                                                      for r in rows)  # fmt: skip
    elif name == "gpu" and rows:
        text = "; ".join(f"{r.get('name')}, {r.get('memory.total')}, driver "
                         f"{r.get('driver_version')}" for r in rows)  # fmt: skip
    elif name == "pytest" and rows:
        text = ", ".join(f"{v} {k}" for k, v in rows[0].items() if k != "exit" and v)
    elif name == "env" and rows:
        values = {r["item"]: r["value"] for r in rows}
        text = f"torch {values.get('torch')} (CUDA {values.get('torch CUDA')}); " + ", ".join(
            f"{k.removeprefix('backend ')}: {'yes' if v == 'usable' else 'no'}"
            for k, v in values.items() if k.startswith("backend "))  # fmt: skip
    elif name == "conv" and rows:
        parts = []
        for mul in dict.fromkeys(r["mul"] for r in rows):
            cells = [f"{r['backend']} {r['fwd_ms']:.3g}/{r['fwd_bwd_ms']:.3g} ms"
                     + (f" ({r['fwd_bwd_x_e3nn']}x)" if r["backend"] != "e3nn"
                        and "fwd_bwd_x_e3nn" in r else "")
                     for r in rows if r["mul"] == mul]  # fmt: skip
            parts.append(f"mul {mul}: " + ", ".join(cells))
        text = "fwd/fwd+bwd: " + "; ".join(parts)
    elif name == "train" and rows:
        parts = {}
        for r in rows:
            key = f"{r['system']} {r['preset'] if r['variant'] != 'mace' else ''}".strip()
            cell = f"{r['variant']} {r['ms_per_step']:.3g} ms"
            if r["variant"] != "ours" and "ms_x_ours" in r:
                cell += f" ({r['ms_x_ours']}x)"
            parts.setdefault(key, []).append(cell)
        text = "; ".join(f"{k}: {', '.join(v)}" for k, v in parts.items())
    elif name == "md" and rows:
        parts = {}
        for r in rows:
            parts.setdefault(r["atoms"], []).append(f"{r['steps_per_s']:.4g} (skin {r['skin_A']})")
        text = "; ".join(f"{n} atoms: {', '.join(v)} steps/s" for n, v in parts.items())
    if rec["status"] != "ok":
        text = f"{text} [{rec['reason']}]" if text else (rec["reason"] or "")
    return text


def run(args) -> int:
    """The check: every step of ``STEPS`` (those not in ``--steps`` skipped), under the limit."""
    t_start = time.monotonic()
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    dry = bool(args.dry_run or args.quick or not torch.cuda.is_available())
    device = "cpu" if dry else "cuda"
    if args.json is None:
        out = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "benchmarks" / "out"
        args.json = str(out / "gpu_check.json")
    check = Check(args, dry, device, t_start)
    not_carried: dict[str, str] = {}
    manifest = Path(args.wheels) if Path(args.wheels).is_absolute() else ROOT / args.wheels
    if (manifest / "manifest.json").exists():
        for spec, why in json.loads((manifest / "manifest.json").read_text())["failed"].items():
            part = why.split(":", 1)[0]
            not_carried[part] = f" (prepare could not fetch {spec}: {why.split(':', 1)[-1]})"
    work = tempfile.mkdtemp(prefix="gpu_check_")
    plan = make_plan(args, dry, work, not_carried)
    plan["caps"] = check.caps
    plan["sleep"] = {k: float(v) for k, v in args.debug_sleep}
    for name, what in describe(plan).items():
        check.steps[name]["what"] = what
    if dry and not (args.dry_run or args.quick):
        check.say("no CUDA device here: a dry run at toy sizes on the CPU")
    check.say(f"gpu_check: {'dry run, ' if dry else ''}device {device}, time limit "
              f"{check.limit:g} s, steps {' '.join(args.steps)}; JSON {check.json}")
    selected = [s for s in STEPS if s in args.steps]
    for name in STEPS:
        if name not in selected:
            check.steps[name].update(status="skipped", reason="skipped: not in --steps")
    check.write()
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    def terminate(signum, frame):  # the machine's `timeout`: stop the children, keep the JSON
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        site = []
        if "install" in selected:
            check.begin("install")
            site = run_install(check, args)
        env["PYTHONPATH"] = os.pathsep.join([*site, str(ROOT / "src"),
                                             *filter(None, [env.get("PYTHONPATH")])])  # fmt: skip
        if not dry:
            env.pop("TRITON_INTERPRET", None)  # compiled kernels, not Triton's interpreter
        for name in ("gpu", "pytest"):
            if name not in selected:
                continue
            if check.left() < MIN_START_S:
                check.finish(name, "skipped", f"skipped: time limit ({max(check.left(), 0):.0f}"
                             " s left)")  # fmt: skip
                continue
            check.begin(name)
            run_gpu(check) if name == "gpu" else run_pytest(check, env, plan["pytest"])
        children = []
        for name in (s for s in CHILD_STEPS if s in selected):
            missing = [m for m in NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
            if missing:
                hint = "".join(not_carried.get(p, "") for p in ("equivar",))
                check.finish(name, "skipped", f"skipped: needs {', '.join(missing)}, not "
                             f"installed{hint}")  # fmt: skip
            else:
                children.append(name)
        run_children(check, children, plan, env)
    except BaseException:  # Ctrl-C or the machine's own limit: keep what finished
        for rec in check.steps.values():
            if rec["status"] in ("pending", "running"):
                rec.update(status="skipped", reason="skipped: the run was interrupted")
        check.write()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(work, ignore_errors=True)
    check.write()
    table = [{"step": rec["step"], "status": rec["status"], "seconds": rec["seconds"] or 0.0,
              "rows": len(rec["rows"]), "result": summary(rec)}
             for rec in check.steps.values()]  # fmt: skip
    width = max(len(row["result"]) for row in table)
    for row in table:  # print_table right-aligns; equal widths read left-aligned
        row["result"] = row["result"].ljust(width)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        print_table(table)
    check.say(f"\ngpu_check on {device}{' (dry run)' if dry else ''}, "
              f"{time.monotonic() - t_start:.0f} s of {check.limit:g} s; JSON {check.json}")
    check.say(buffer.getvalue().rstrip())
    check.log.close()
    return 1 if any(rec["status"] == "error" for rec in check.steps.values()) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="here: fetch the wheels the GPU image lacks into .whl/")
    p.add_argument("--wheels", default=".whl", help="folder to fill (default .whl)")
    p.add_argument("--python-version", default="3.12", help="the GPU image's Python (3.12)")
    p.add_argument("--cuda", default="13", choices=["12", "13"],
                   help="CUDA major of the image's torch, for the cuEquivariance ops (13)")
    p.add_argument("--no-mace", action="store_true", help="leave mace-torch out")
    p.add_argument("--max-mib", type=float, default=60.0, help="size that still travels (60)")
    r = sub.add_parser("run", parents=[standard_parser()],
                       help="there: the whole check under --time-limit (a dry run without CUDA)")
    r.add_argument("--time-limit", type=float, default=450.0,
                   help="wall-clock seconds for everything, the JSON included (450)")
    r.add_argument("--dry-run", action="store_true",
                   help="toy sizes on the CPU (also without CUDA; --quick is the same)")
    r.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS,
                   help="steps to run (default all; the others are recorded as skipped)")
    r.add_argument("--cap", nargs="+", default=[], type=key_value, metavar="STEP=SECONDS",
                   help=f"per-step caps (defaults {CAPS})")
    r.add_argument("--wheels", default=".whl", help="the carried folder (default .whl)")
    r.add_argument("--site", default=SITE, help=f"where they are installed (default {SITE})")
    r.add_argument("--presets", nargs="+", default=None, choices=["S", "M", "L"],
                   help="train presets (default S M; S in a dry run)")
    r.add_argument("--batch-size", type=int, default=32, help="train batch on the GPU (32)")
    r.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    r.add_argument("--debug-sleep", nargs="+", default=[], type=key_value,
                   help=argparse.SUPPRESS)  # tests: STEP=SECONDS of sleep in a child step
    c = sub.add_parser("child", help="(internal) the steps run in a child process")
    c.add_argument("--plan", required=True)
    c.add_argument("--events", required=True)
    c.add_argument("steps", nargs="+", choices=CHILD_STEPS)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        return prepare(args)
    if args.command == "child":
        return child(args)
    for key, value in [*args.cap, *args.debug_sleep]:
        if key not in STEPS or not isinstance(value, (int, float)):
            parser.error(f"expected STEP=SECONDS with STEP in {', '.join(STEPS)}, got "
                         f"{key}={value}")  # fmt: skip
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
