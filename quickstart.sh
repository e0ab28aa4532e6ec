#!/usr/bin/env bash
# From a fresh clone: install, build the offline embeddings once, run the smoke study (both
# models, real Wikitext-2 from ../shared/data, CPU) and make its plots and tables.
# Rerunning skips what is done. For the full study drop --smoke and use --config all.
set -euo pipefail
cd "$(dirname "$0")"
DATA=${DATA:-../shared/data/wikitext2}
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" 2>/dev/null \
  || echo "Note: torch==2.13.0 not installable here; using the installed torch."
python -m pip install --quiet --disable-pip-version-check -r requirements.txt
[ -f data/embeddings.npz ] || python -m utils.build_embeddings --data_folder "$DATA" --out data/embeddings.npz
python run_exp.py --config 2,6 --smoke --data_folder "$DATA" --embeddings data/embeddings.npz --log_dir logs/smoke
python -m utils.report --log_dir logs/smoke --out plots/smoke
