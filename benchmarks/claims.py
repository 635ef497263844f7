"""The README's results table, re-derived from the benchmark JSON files in ``benchmarks/results/``.

Every number in the table between the README's ``<!-- claims:begin -->`` and
``<!-- claims:end -->`` markers is computed here from a JSON file that a benchmark script wrote
(each row names its file; RESULTS.md names the command, date and hardware). So text and data
cannot drift apart: ``--check`` (the default, also ``--quick``; a test runs it) fails when the
README's table differs from what the files give, and ``--write`` rewrites the table.

    python benchmarks/claims.py            # check: exit 1 and a diff if the README drifted
    python benchmarks/claims.py --write    # regenerate the README table from the JSON files
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- claims:begin -->", "<!-- claims:end -->"

#: the JSON file behind each row (relative to the repository root)
MD17_JSON = "benchmarks/results/md17_cpu_2026-12-04.json"
NBODY_JSONS = (("benchmarks/results/nbody_fresh_baseline.json", ""),)


def _load(path: str) -> dict:
    return json.loads((ROOT / path).read_text())


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def md17_rows(path: str = MD17_JSON) -> list[list[str]]:
    """MD17 at equal CPU budget: where equivar is lowest, and the force-error ratios."""
    rows = _load(path)["rows"]
    models = {run["model"] for row in rows for run in row["runs"]}
    peers = sorted(models - {"equivar"})
    minutes = rows[0]["minutes"]

    def force(row: dict, model: str) -> float:
        return next(r["forces_mae_meV_A"] for r in row["runs"] if r["model"] == model)

    def energy(row: dict, model: str) -> float:
        return next(r["energy_mae_meV"] for r in row["runs"] if r["model"] == model)

    lowest_f = sum(all(force(r, "equivar") < force(r, p) for p in peers) for r in rows)
    lowest_e = sum(all(energy(r, "equivar") < energy(r, p) for p in peers) for r in rows)
    ratios = {p: [force(r, p) / force(r, "equivar") for r in rows] for p in peers}
    double = {n: sum(all(force(r, p) >= 2 * force(r, "equivar") for p in peers)
                     for r in rows if r["n_train"] == n)
              for n in sorted({r["n_train"] for r in rows}, reverse=True)}  # fmt: skip
    n_mol = {n: sum(r["n_train"] == n for r in rows) for n in double}
    names = {"schnet": "SchNet", "dimenet++": "DimeNet++"}
    ratio_text = ", ".join(f"{names.get(p, p)} {_geomean(v):.2f}x ({min(v):.2f}-{max(v):.2f})"
                           for p, v in ratios.items())
    double_text = ", ".join(f"{double[n]} of {n_mol[n]} with {n} frames" for n in double)
    out = [[f"MD17 (GFN2-xTB), 10 molecules x {len(double)} training sizes, {minutes:g} "
            "CPU-min per model",
            f"lowest force error in {lowest_f} of {len(rows)} rows, lowest energy error in "
            f"{lowest_e} of {len(rows)}",
            f"force MAE ratio peer/equivar (geometric mean, range): {ratio_text}; >= 2x below "
            f"both: {double_text}", f"`{path}`"]]
    for molecule in ("ethanol", "aspirin"):
        for row in rows:
            if row["molecule"] == molecule and row["n_train"] == max(double):
                peer_text = ", ".join(f"{names.get(p, p)} {force(row, p):.1f}" for p in peers)
                out.append([f"MD17 {molecule}, {row['n_train']} frames: force MAE (meV/A)",
                            f"{force(row, 'equivar'):.1f}", peer_text, f"`{path}`"])
    return out


#: MD17 runs with the PyPI peers (MACE, NequIP) beside equivar: all ten molecules at 3
#: CPU-minutes, and ethanol and aspirin at 30
MD17_PEERS_JSON = "benchmarks/results/md17_peers_3min_2026-12-07.json"
MD17_PEERS_LONG_JSON = "benchmarks/results/md17_peers_30min.json"  # once a full run is in


NAMES = {"schnet": "SchNet", "dimenet++": "DimeNet++", "mace": "MACE", "nequip": "NequIP"}


def _best_peer_forces(row: dict) -> dict[str, float]:
    """Each peer's force MAE at the better of its recipes (``mace``: the shared loop,
    ``mace-own``: MACE's own recipe), from a row's runs."""
    best: dict[str, float] = {}
    for run in row["runs"]:
        name = run["model"].removesuffix("-own")
        if name != "equivar":
            best[name] = min(best.get(name, math.inf), run["forces_mae_meV_A"])
    return best


def md17_peer_summary(path: str) -> list[list[str]]:
    """All molecules of one peers run: where equivar is lowest against each peer at its better
    recipe, and the geometric-mean force ratio."""
    rows = [r for r in _load(path)["rows"] if any(x["model"] == "equivar" for x in r["runs"])]
    ours = {r["molecule"]: next(x["forces_mae_meV_A"] for x in r["runs"]
                                if x["model"] == "equivar") for r in rows}  # fmt: skip
    best = {r["molecule"]: _best_peer_forces(r) for r in rows}
    peers = sorted({p for b in best.values() for p in b})
    lowest = sum(all(ours[m] < v for v in best[m].values()) for m in ours)
    ratios = {p: [best[m][p] / ours[m] for m in ours if p in best[m]] for p in peers}
    ratio_text = ", ".join(f"{NAMES.get(p, p)} {_geomean(v):.2f}x ({min(v):.2f}-{max(v):.2f})"
                           for p, v in ratios.items() if v)  # fmt: skip
    row0 = rows[0]
    own = [f"{NAMES.get(x['model'].removesuffix('-own'), x['model'])} {r['molecule']}"
           for r in rows for x in r["runs"] if x["model"].endswith("-own")]
    everywhere = len(own) == len(rows) * len(peers)
    recipe_text = (", each peer at the better of the shared loop and its own recipe" if everywhere
                   else f"; a peer's own recipe, where run ({', '.join(own)}), counts if better"
                   if own else "")  # fmt: skip
    return [[f"MD17 (GFN2-xTB), {len(rows)} molecules, {row0['n_train']} frames, "
             f"{row0['minutes']:g} CPU-min per model{recipe_text}",
             f"lowest force error in {lowest} of {len(rows)} molecules",
             f"force MAE ratio peer/equivar (geometric mean, range): {ratio_text}", f"`{path}`"]]


def md17_peer_rows(path: str = MD17_PEERS_JSON, molecules=None) -> list[list[str]]:
    """One row per molecule (all, or ``molecules``): equivar's force MAE beside each other
    model's, a peer at the better of its recipes (marked when its own recipe won)."""
    out = []
    for row in _load(path)["rows"]:
        runs = {r["model"]: r["forces_mae_meV_A"] for r in row["runs"]}
        if "equivar" not in runs or (molecules and row["molecule"] not in molecules):
            continue
        others = []
        for name, value in sorted(_best_peer_forces(row).items()):
            won = runs.get(f"{name}-own") == value and f"{name}-own" in runs
            others.append(f"{NAMES.get(name, name)} {value:.1f}" + (" (own recipe)" if won
                                                                    else ""))  # fmt: skip
        out.append([f"MD17 {row['molecule']}, {row['n_train']} frames, {row['minutes']:g} "
                    "CPU-min per model: force MAE (meV/A)", f"{runs['equivar']:.1f}",
                    ", ".join(others), f"`{path}`"])
    return out


#: the training step's CPU cost beside the peers (``train_speed.py``)
TRAIN_SPEED_JSON = "benchmarks/results/train_speed_peers_2026-12-07.json"


def train_speed_rows(path: str = TRAIN_SPEED_JSON) -> list[list[str]]:
    """One row per system: equivar's training step in CPU ms beside MACE's and NequIP's."""
    names = {"mace": "MACE", "nequip": "NequIP"}
    rows = _load(path)["rows"]
    out = []
    for system in dict.fromkeys(r["system"] for r in rows):
        got = {r["model"]: r for r in rows if r["system"] == system}
        if "equivar" not in got:
            continue
        ours = got["equivar"]
        others = ", ".join(f"{names.get(m, m)} {r['ms_per_step']:.0f} ms "
                           f"({r['ms_per_step'] / ours['ms_per_step']:.1f}x)"
                           for m, r in got.items() if m != "equivar")  # fmt: skip
        out.append([f"Training step, {system} (MD17), batch {ours['batch']}, one CPU thread "
                    "(forces by autograd, optimiser step)", f"{ours['ms_per_step']:.0f} ms",
                    others, f"`{path}`"])
    return out


def nbody_rows(path: str, label: str = "") -> list[list[str]]:
    """Charged 5-body, 1000 steps ahead: the standard test set and the fresh ones."""
    out = []
    for row in _load(path)["rows"]:
        if row.get("source") != "measured" or "fresh_mse" not in row:
            continue
        seeds = row["seeds"]
        out.append([
            f"N-body (charged, 5 particles), {row['model']}{', ' + label if label else ''}, "
            f"{row['epochs']} epochs",
            f"test MSE {row['test_mse']:.5f} +- {row['std']:.5f} (standard test set, "
            f"{seeds} seeds); {row['fresh_mse']:.5f} +- {row['fresh_sem']:.5f} on "
            f"{row['fresh_sets']} fresh test sets x {seeds} seeds (standard error: seeds and "
            f"sets)",
            "published: EGNN 0.0071, SEGNN 0.0043, CGENN 0.0039, MVN 0.0035 (each on one "
            "test set)", f"`{path}`"])
    return out


def table() -> str:
    """The README's results table, as markdown."""
    rows = md17_rows()
    if (ROOT / MD17_PEERS_JSON).exists():
        rows += md17_peer_summary(MD17_PEERS_JSON)
        rows += md17_peer_rows(MD17_PEERS_JSON, molecules=("ethanol", "aspirin"))
    if (ROOT / MD17_PEERS_LONG_JSON).exists():
        rows += md17_peer_rows(MD17_PEERS_LONG_JSON)
    if (ROOT / TRAIN_SPEED_JSON).exists():
        rows += train_speed_rows()
    for path, label in NBODY_JSONS:
        if (ROOT / path).exists():
            rows += nbody_rows(path, label)
    lines = ["| benchmark | equivar | beside it | data |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def readme_table(text: str) -> str:
    """The table between the markers of ``text``."""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{README} has no {BEGIN} ... {END} block")
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the README's table")
    parser.add_argument("--check", action="store_true", help="compare only (the default)")
    parser.add_argument("--quick", action="store_true", help="the same as --check (fast)")
    args = parser.parse_args(argv)
    text = README.read_text()
    expected, current = table(), readme_table(text)
    if args.write:
        before, _, rest = text.partition(BEGIN)
        after = rest.partition(END)[2]
        README.write_text(f"{before}{BEGIN}\n{expected}\n{END}{after}")
        print(f"wrote the results table of {README.name} ({expected.count(chr(10)) - 1} rows)")
        return 0
    if current == expected:
        print(f"{README.name}: the results table matches the JSON files "
              f"({expected.count(chr(10)) - 1} rows)")
        return 0
    diff = difflib.unified_diff(current.splitlines(), expected.splitlines(), "README.md",
                                "from the JSON files", lineterm="")
    print("\n".join(diff))
    print(f"\n{README.name}'s results table differs from the JSON files: "
          "run `python benchmarks/claims.py --write`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
