#!/usr/bin/env bash
# Fill the inputs scripts/gpu_paper_run.sh reads beside the checkout (both ignored by git):
#   .whl/      wheels the GPU image lacks (rdkit, nltk, platformdirs; python 3.12), rdkit slimmed
#              to what molshape imports so checkout + wheels + data stay under the 64 MiB a call
#              carries; fcd-torch (5 MB) only with FCD=1, when the tree leaves room for it
#   .devdata/  zinc250k.smi.gz and equation2_15_dataset.txt.gz from $MOLSHAPE_DATA_DIR
# Usage: MOLSHAPE_DATA_DIR=../shared/data bash scripts/gpu_inputs.sh
set -eu
DATA=${MOLSHAPE_DATA_DIR:?set MOLSHAPE_DATA_DIR to the folder holding zinc250k.smi.gz}
rm -rf .whl .devdata; mkdir -p .whl .devdata
PKGS="rdkit nltk platformdirs"; [ -n "${FCD:-}" ] && PKGS="$PKGS fcd-torch"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $PKGS
# rdkit: drop the type stubs, the sping drawing kit and every Contrib package but SA_Score
# (penalized logP); pip installs a wheel without checking its RECORD against the files
python3 - .whl/rdkit-*.whl <<'PY'
import sys, zipfile
src = sys.argv[1]
tmp = src + ".tmp"
keep = lambda n: not (n.startswith("rdkit-stubs/") or n.startswith("rdkit/sping/")
                      or (n.startswith("rdkit/Contrib/") and n.count("/") > 2
                          and not n.startswith("rdkit/Contrib/SA_Score/")))
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        if keep(item.filename):
            zout.writestr(item, zin.read(item.filename))
import os
os.replace(tmp, src)
PY
cp "$DATA/zinc250k.smi.gz" "$DATA/equation2_15_dataset.txt.gz" .devdata/
du -sh .whl .devdata
