#!/usr/bin/env bash
# The latent-space ablation: Kekulé ZINC, the cpu preset's sizes, the same 50,000 training
# molecules, seed and budget (2 epochs = 1,000 Adam steps of 100) for every row; each row changes
# the design named in its folder. Two rows run at a time, one core each; logs go to runs/*.log.
# Then: python scripts/ablation_table.py runs/ablation-*  (and scripts/latent_report.py on each best.pt).
set -eu
PY=${PY:-.venv/bin/python}
COMMON="--grammar smiles_kekule --preset cpu --limit 50000 --valid-limit 1000 --epochs 2 --batch-size 100
        --threads 1 --seed 0 --no-progress"
NEW="--schedule exp --lr 2e-3 --lr-half-life 1000"
run() {  # name, then train options
  local name=$1; shift
  $PY -m molshape train $COMMON "$@" --out "runs/ablation-$name" > "runs/ablation-$name.log" 2>&1
}
run base --schedule plateau --lr 1e-3 --encoder conv --no-dec-init --rule-dropout 0 &
run full $NEW --dec-init --rule-dropout 0.25 --encoder gru &
wait
run conv $NEW --dec-init --rule-dropout 0.25 --encoder conv &
run rec5 $NEW --dec-init --rule-dropout 0.25 --encoder gru --lambda-rec 3.35 &
wait
