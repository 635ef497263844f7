#!/usr/bin/env bash
# The GPU measurements still open (benchmarks/RESULTS.md), as steps that each fit one call of a
# lent GPU machine (10 min per command, 30 min per session; no network there). Every step writes
# its JSON and log to $OUT (default benchmarks/out/gpu).
#
# Here, once (needs pip's index; fetches the wheels the GPU image lacks: ase and vesin for
# equivar, cuEquivariance 0.13 for the side-by-side timing):
#     bash benchmarks/gpu_session.sh prepare
# There, in order (carry the folders named; .whl1 and .whl2 are too large for one call, so the
# first call keeps .whl1 in $HOME/keep and the second, within the 30 s the machine stays warm,
# brings .whl2):
#     carry [.whl, .whl1]  bash benchmarks/gpu_session.sh keep kernels     # pytest -m gpu, ~3 min
#     carry [.whl, .whl2]  bash benchmarks/gpu_session.sh conv             # issue 7 table, ~6 min
#     carry [.whl]         bash benchmarks/gpu_session.sh nbody            # integrator, 1 seed
#     carry [.whl]         bash benchmarks/gpu_session.sh md               # MD speed, 10^2..10^4
#     carry [.whl]         bash benchmarks/gpu_session.sh train            # training throughput
#     carry [.whl]         bash benchmarks/gpu_session.sh vmc              # Be, preset L
# Steps can be chained in one call (`... conv nbody`) while the total stays under 10 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out/gpu}
mkdir -p "$OUT"
SITE=$HOME/site

setup() {  # install the carried wheels (once per machine) and use the source tree
    if [ ! -f "$SITE/.done" ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
            .whl/*.whl $(ls "$HOME"/keep/*.whl .whl1/*.whl .whl2/*.whl 2>/dev/null) || return 1
        [ -d .whl2 ] && touch "$SITE/.done"
    fi
    export PYTHONPATH="$SITE:$PWD/src" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
}

for step in "$@"; do
    case $step in
    prepare)
        for d in .whl; do mkdir -p $d; grep -qx "/$d/" .git/info/exclude || echo "/$d/" >> .git/info/exclude; done
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 -d .whl ase==3.29.0 vesin==0.6.2
        bash ../shared/tools/cueq-wheels
        du -sh .whl .whl1 .whl2 ;;
    keep)  # the first call: keep the large ops wheel outside the tree for the next call
        mkdir -p "$HOME/keep" && cp .whl1/*.whl "$HOME/keep/" ;;
    kernels)
        setup && python3 -m pytest -q -m gpu tests/kernels -x 2>&1 | tee "$OUT/pytest_gpu.log" ;;
    conv)
        setup && python3 -c "import cuequivariance_ops_torch" && \
        python3 benchmarks/conv.py --json "$OUT/conv_h100.json" 2>&1 | tee "$OUT/conv.log" ;;
    nbody)
        setup && python3 benchmarks/nbody.py --layers egnn --preset integrator --schedule cosine \
            --lr 2e-3 --clip 1 --epochs 100 --seeds 0 --json "$OUT/nbody.json" 2>&1 \
            | tee "$OUT/nbody.log" ;;
    md)
        setup && python3 benchmarks/md_speed.py --device cuda --json "$OUT/md_speed.json" 2>&1 \
            | tee "$OUT/md_speed.log" ;;
    train)
        setup && python3 benchmarks/train_speed.py --device cuda --json "$OUT/train_speed.json" \
            2>&1 | tee "$OUT/train_speed.log" ;;
    vmc)
        setup && timeout 560 python3 benchmarks/vmc.py --systems Be --device cuda \
            --iterations 1500 --walkers 2048 --pretrain 300 --eval-iterations 300 \
            --json "$OUT/vmc_be.json" 2>&1 | tee "$OUT/vmc.log" ;;
    *)
        echo "unknown step $step (prepare keep kernels conv nbody md train vmc)"; exit 2 ;;
    esac
done
