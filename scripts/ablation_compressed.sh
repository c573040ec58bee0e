#!/usr/bin/env bash
# Compressed derivations at a fixed CPU budget: the Kekulé CPU preset's design as shipped
# (bidirectional GRU encoder, z as the decoder's initial state, rule dropout 0.25, exp schedule;
# bf16 autocast where the CPU has native bf16 arithmetic, fp32 elsewhere), the same 50,000 training molecules and seed, MINUTES of one core each, with and
# without --compressed. Both rows run at once, one core each; logs go to runs/ablation-*.log.
# Then: python scripts/ablation_table.py runs/ablation-steps runs/ablation-compressed
#       and python scripts/latent_report.py on each best.pt.
set -eu
PY=${PY:-.venv/bin/python}
MINUTES=${MINUTES:-30}
BF16=$($PY -c "from molshape.core.runtime import cpu_bf16_supported as s; print('--cpu-bf16' if s() else '')")
COMMON="--grammar smiles_kekule --preset cpu --limit 50000 --valid-limit 1000 --epochs 50 --batch-size 100
        --threads 1 --seed 0 --no-progress --schedule exp --lr 2e-3 --lr-half-life 1000 $BF16
        --dec-init --rule-dropout 0.25 --encoder gru --max-minutes $MINUTES"
run() {  # name, then train options
  local name=$1; shift
  $PY -m molshape train $COMMON "$@" --out "runs/ablation-$name" > "runs/ablation-$name.log" 2>&1
}
run steps --no-compressed &
run compressed --compressed &
wait
