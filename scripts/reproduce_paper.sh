#!/usr/bin/env bash
# Paper-scale grammar runs (GVAE sizes, GMM-DAE objective and the vae baseline) on one GPU,
# then evaluation and the full GVAE optimisation protocol. Each step writes a JSON summary
# under $OUT; re-running resumes (train --resume, optimize resumes per seed).
#
#   MOLSHAPE_DATA_DIR=../shared/data bash scripts/reproduce_paper.sh [OUT]
#
# Measured on one H200 (scripts/gpu_paper_run.sh): the ZINC paper preset trains at about
# 16,000 molecules/s, so 100 epochs take about 25 minutes; the greedy 50-point qLogEI batches
# took about 160 s each with 19 BO processes sharing the GPU, so the optimisation dominates:
# run several of its seeds at once with --workers.
set -euo pipefail
OUT=${1:-runs/paper}
mkdir -p "$OUT"
M="${MOLSHAPE:-molshape}"

for model in gmm vae; do
  # ZINC250k, GVAE sizes (3x501 GRU, latent 56), 100 epochs, batch 500
  $M train --grammar smiles --model "$model" --preset paper --device cuda --no-progress \
     --out "$OUT/smiles-$model" --json $( [ -f "$OUT/smiles-$model/last.pt" ] && echo --resume ) \
     > "$OUT/smiles-$model.train.json"
  $M evaluate --checkpoint "$OUT/smiles-$model/best.pt" --n 10000 --device cuda --json \
     > "$OUT/smiles-$model.eval.json"
  # GVAE protocol: whole encoded training set, SVGP with 500 inducing points, 10 seeds x 5 x 50
  $M optimize --checkpoint "$OUT/smiles-$model/best.pt" --target logp --surrogate svgp --inducing 500 \
     --seeds 10 --iterations 5 --batch 50 --workers 5 --device cuda --out "$OUT/bo-logp-$model" --json \
     > "$OUT/bo-logp-$model.json"

  # expressions, GVAE sizes (latent 25, GRU 100), 50 epochs, batch 600
  $M train --grammar expr --model "$model" --preset paper --device cuda --no-progress \
     --out "$OUT/expr-$model" --json $( [ -f "$OUT/expr-$model/last.pt" ] && echo --resume ) \
     > "$OUT/expr-$model.train.json"
  $M evaluate --checkpoint "$OUT/expr-$model/best.pt" --n 10000 --device cuda --json > "$OUT/expr-$model.eval.json"
  $M optimize --checkpoint "$OUT/expr-$model/best.pt" --target expr --surrogate svgp --inducing 500 \
     --seeds 10 --iterations 5 --batch 50 --workers 5 --device cuda --out "$OUT/bo-expr-$model" --json \
     > "$OUT/bo-expr-$model.json"
done
echo "summaries in $OUT/*.json"
