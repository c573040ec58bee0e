#!/usr/bin/env bash
# One prepared call on a lent GPU (about 8 minutes): the paper-preset GMM-DAE (Kekulé grammar,
# semantic masks, the design of docs/latent-space.md) trained on all of ZINC250k within a time
# budget, evaluated, and its latent space measured (scripts/latent_report.py), the BO protocol (SVGP with 500 inducing points on
# the whole encoded training set, 10 seeds x 5 x 50) for the shipped cpu-preset models, the
# CUDA tests and the GPU benchmarks. Every stage logs under $OUT; a failed stage never stops the
# next; what did not finish in time still comes back (BO state summarised per seed).
#
# Inputs beside the checkout (ignored by git, sent with the call): .whl/ (wheels the GPU image
# lacks) and .devdata/ (the data files), filled by `bash scripts/gpu_inputs.sh`. Optional: fcd-torch
# in .whl (FCD; skipped without it), and .devdata/zinc-vae-cpu.pt / expr-vae-cpu.pt (the VAE BO
# runs; skipped without them).
# Usage on the device:   OUT=... bash scripts/gpu_paper_run.sh
#   TRAIN_MIN=4 (training budget, minutes), BENCH_TRAIN=1 (also the training benchmark), SKIP_BO=1
#   (no BO runs or GP timings: the whole device call on the paper model), SKIP_TRAIN=1 (BO only),
#   SKIP_EVAL=1 (no evaluation on the device: the checkpoint comes back and is measured at home),
#   VALID_LIMIT=2000 (validation and test molecules), LR_HALF_LIFE (steps; default: the preset's),
#   CALL_S=590 (the call's time limit: the best checkpoint so far is sent back 40 s before it)
# Local rehearsal (CPU, tiny sizes, about 5 minutes):
#   DRY=1 PY=.venv/bin/python OUT=/tmp/gpu-dry bash scripts/gpu_paper_run.sh
set -u
START=$(date +%s)
OUT=${OUT:?set OUT}
W=${WORK:-/tmp/molshape-gpu}
PY=${PY:-python3}
rm -rf "$W"; mkdir -p "$OUT" "$W/logs" "$W/bo"
t() { echo $(( $(date +%s) - START )); }
say() { echo "[t=$(t)s] $*" | tee -a "$W/logs/timeline.txt"; }

if [ -n "${DRY:-}" ]; then  # same stages, sizes that run on a CPU in minutes
  DEV=cpu; TRAIN="--preset cpu --limit 2000 --valid-limit 200 --epochs 2 --max-minutes 1"; NEVAL=100
  BO="--seeds 2 --iterations 1 --batch 3 --n-init 300 --inducing 32"; VOTE=5; W5=2; W3=2
  BO_END=240; BENCH="--preset cpu --batches 2 --batch-size 50 --limit 500"; SIZES="500 1000"
else
  DEV=cuda; NEVAL=${VALID_LIMIT:-2000}
  TRAIN="--preset paper --max-minutes ${TRAIN_MIN:-4} --valid-limit $NEVAL ${LR_HALF_LIFE:+--lr-half-life $LR_HALF_LIFE}"
  BO="--seeds 10 --iterations 5 --batch 50 --inducing 500"; VOTE=500; W5=5; W3=3
  BO_END=${BO_END:-460}; BENCH="--preset paper --batches 8 --batch-size 500 --limit 20000"; SIZES="5000 20000"
  if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      > "$W/logs/pip.log" 2>&1 || { cat "$W/logs/pip.log"; exit 1; }
    export PYTHONPATH=/tmp/site
  fi
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export MOLSHAPE_DATA_DIR="$PWD/.devdata" MOLSHAPE_CACHE_DIR="$W/cache"
MS="$PY -m molshape"
NOFCD=$($PY -c "import fcd_torch" > /dev/null 2>&1 || echo --no-fcd)
CKPT="$W/paper-gmm/best.pt"
# slim copy of the paper model (no optimizer state), in parts under the 16 MiB return limit
send_model() {
  [ -f "$CKPT" ] || return 1
  $PY - "$CKPT" "$W/paper-gmm-cuda.pt" <<'EOF' && (cd "$W" && rm -f "$OUT"/paper-gmm-cuda.pt.part-* && split -b 15m paper-gmm-cuda.pt "$OUT/paper-gmm-cuda.pt.part-")
import sys
sys.path.insert(0, "scripts")
from ship_model import slim
from molshape.core.checkpoint import load_checkpoint, save_checkpoint
save_checkpoint(slim(load_checkpoint(sys.argv[1])), sys.argv[2])
EOF
}

# -- 0. environment (stop at once if the stack does not import: nothing else could run) ----------
{ $PY -c "import sys, torch, rdkit, nltk, botorch, gpytorch, molshape
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'rdkit', rdkit.__version__,
      'botorch', botorch.__version__)" && nproc && (nvidia-smi || true); } > "$W/logs/env.txt" 2>&1 \
  || { cat "$W/logs/env.txt"; exit 1; }
say "env: $(head -1 "$W/logs/env.txt")"

# -- 1. parse both data sets into the cache (CPU) while the CUDA tests run (GPU) -----------------
# (the BO runs need the other two grammars; the semantic check of the Kekule parses takes every core)
( [ -n "${SKIP_BO:-}" ] || $MS data prepare --grammar smiles > "$W/logs/prepare.log" 2>&1
  $MS data prepare --grammar smiles_kekule --workers "$(nproc)" >> "$W/logs/prepare.log" 2>&1
  [ -n "${SKIP_BO:-}" ] || $MS data prepare --grammar expr >> "$W/logs/prepare.log" 2>&1 ) &
PREP=$!
if [ -z "${DRY:-}" ]; then
  timeout 120 $PY -m pytest -q -m gpu tests -p no:cacheprovider > "$W/logs/pytest_gpu.log" 2>&1
  say "pytest -m gpu: $(tail -1 "$W/logs/pytest_gpu.log")"
fi
wait $PREP; say "data prepared: $(grep -c . "$W/logs/prepare.log") log lines"

if [ -z "${SKIP_TRAIN:-}" ]; then
# -- 2. training throughput, GPU alone (bucketed vs full padding, same batches; BENCH_TRAIN=1) ---
if [ -n "${BENCH_TRAIN:-}" ]; then
timeout 90 $PY scripts/bench_train.py $BENCH --device $DEV > "$W/logs/bench_train.log" 2>&1
say "bench_train: $(tail -1 "$W/logs/bench_train.log")"
fi

# -- 3. paper-preset GMM-DAE on all of ZINC250k, time-limited (GPU) -----------------------------
$MS train --grammar smiles_kekule --model gmm $TRAIN --device $DEV --no-progress --out "$W/paper-gmm" --json \
  > "$W/logs/train.json" 2> "$W/logs/train.log" &
TRAIN_PID=$!
say "training started"
# whatever happens later, the best checkpoint so far comes back before the call's limit
( sleep $(( ${CALL_S:-590} - 40 - $(t) )); send_model && say "watchdog: sent the best checkpoint so far" || say "watchdog: no checkpoint yet"
  (cd "$W" && tar czf "$OUT/logs.tar.gz" logs paper-gmm/*.json 2> /dev/null) ) &
WATCH=$!
fi

# -- 4. BO protocol for the shipped cpu-preset models, niced so training keeps its CPU (SKIP_BO=1) -
ACQ="--surrogate svgp --num-restarts 2 --raw-samples 64 --mc-samples 64 --maxiter 25 --device $DEV --threads 1"
bo() {  # name, then optimize options
  local name=$1; shift
  nice -n 10 timeout $(( BO_END - $(t) )) $MS optimize $ACQ "$@" --out "$W/bo/$name" --json \
    > "$W/logs/bo-$name.json" 2> "$W/logs/bo-$name.log" &
}
if [ -z "${SKIP_BO:-}" ]; then
[ -n "${SKIP_TRAIN:-}" ] || sleep 5
bo logp-gmm --checkpoint molshape/pretrained/zinc-gmm-cpu.pt --target logp $BO --workers $W5
bo expr-gmm --checkpoint molshape/pretrained/expr-gmm-cpu.pt --target expr $BO --workers $W3
[ -f .devdata/expr-vae-cpu.pt ] && bo expr-vae-vote --checkpoint .devdata/expr-vae-cpu.pt --target expr $BO --attempts $VOTE --workers $W3
# the logp runs share the scores of the same 40,000 training molecules: let the first one cache them
for _ in $(seq 90); do ls "$MOLSHAPE_CACHE_DIR"/optimize/scores-logp-* > /dev/null 2>&1 && break; sleep 1; done
[ -f .devdata/zinc-vae-cpu.pt ] && bo logp-vae-vote --checkpoint .devdata/zinc-vae-cpu.pt --target logp $BO --attempts $VOTE --workers $W5
bo logp-gmm-turbo --checkpoint molshape/pretrained/zinc-gmm-cpu.pt --target logp --strategy turbo \
  $BO --seeds $(( W5 > 2 ? 5 : 2 )) --workers $W3
say "BO runs started (end by t=${BO_END}s)"
fi

if [ -z "${SKIP_TRAIN:-}" ]; then
wait $TRAIN_PID; say "training done: rc $? $(tr -d '\n' < "$W/logs/train.json" | cut -c1-300)"
kill $WATCH 2> /dev/null; send_model && say "model sent: $(ls "$OUT" | tr '\n' ' ')"
[ -n "${SKIP_EVAL:-}" ] || {

# -- 5. evaluate the paper model and measure its latent space (GPU), then the GP fit timings -----

timeout 120 $MS evaluate --checkpoint "$CKPT" --n $NEVAL --device $DEV $NOFCD --data .devdata/zinc250k.smi.gz \
  --out "$W/paper-eval" --json > "$W/logs/evaluate.json" 2> "$W/logs/evaluate.log" &
EVAL_PID=$!
timeout 150 $PY scripts/latent_report.py "$CKPT" --limit $NEVAL --device $DEV --json "$W/logs/latent.json" \
  > "$W/logs/latent.log" 2>&1
say "latent: $(tail -1 "$W/logs/latent.log")"
wait $EVAL_PID; say "evaluate: rc $?"
if [ -z "${SKIP_BO:-}" ]; then
timeout 120 $PY scripts/bench_surrogate.py --sizes $SIZES --device $DEV > "$W/logs/bench_surrogate.log" 2>&1
say "bench_surrogate: $(tail -1 "$W/logs/bench_surrogate.log")"
fi
}
fi

# -- 6. wait for BO, then collect -----------------------------------------------------------------
wait; say "BO finished or timed out"
$PY - "$W/bo" > "$W/logs/bo_states.json" 2> "$W/logs/bo_states.err" <<'EOF'
"""Per run and seed: finished iterations, records and GP metrics from the resumable state files."""
import json, sys
from pathlib import Path
from molshape.core.checkpoint import load_checkpoint
out = {}
for run in sorted(Path(sys.argv[1]).iterdir()):
    for f in sorted((run / "state").glob("seed_*.pt")):
        s = load_checkpoint(f)
        out.setdefault(run.name, {})[f.stem] = {"iteration": s["iteration"], "initial_best": s["initial_best"],
                                                "records": s["records"], "metrics": s["metrics"]}
print(json.dumps(out))
EOF
for run in "$W"/bo/*/; do say "bo $(basename "$run"): $(ls "$run"state 2>/dev/null | wc -l) seeds, summary $( [ -f "$run/summary.json" ] && echo yes || echo no)"; done

(cd "$W" && find . \( -name state -o -name cache \) -prune -o -type f ! -name '*.pt' -print | tar czf "$OUT/results.tar.gz" -T -)
say "packed: $(ls "$OUT" | tr '\n' ' ')"
cp "$W/logs/timeline.txt" "$OUT/"
