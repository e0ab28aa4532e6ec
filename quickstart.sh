#!/usr/bin/env bash
# From a fresh clone, anywhere (the data is in data/; nothing outside the project is read):
# install what the kit and its tests need, build the offline stand-in embeddings once, run the
# smoke study (configurations 2 and 6: both models, real Wikitext-2, CPU) and make its report.
# Rerunning skips what is done. Then: python -m pytest -q tests   (the test suite)
#
#   EMBEDDINGS=path/to/embeddings.npz bash quickstart.sh   # use GPT-1's file (or any) instead of building
#   SKIP_INSTALL=1 bash quickstart.sh                      # the environment is already set up
set -euo pipefail
cd "$(dirname "$0")"
EMBEDDINGS=${EMBEDDINGS:-data/embeddings.npz}
if [ -z "${SKIP_INSTALL:-}" ]; then
  # torch first, pinned: an unpinned torch would pull a multi-GB CUDA build on a machine without one.
  python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" 2>/dev/null \
    || echo "Note: torch==2.13.0 is not installable here; using the installed torch ($(python -c 'import torch; print(torch.__version__)' 2>/dev/null || echo none))."
  python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
fi
[ -f "$EMBEDDINGS" ] || python -m utils.build_embeddings --out "$EMBEDDINGS"
python run_exp.py --config 2,6 --smoke --embeddings "$EMBEDDINGS" --print_every 1
python -m utils.report --log_dir logs_smoke --out plots_smoke
echo "Done: runs in logs_smoke/, figures and tables in plots_smoke/ (results.md). Tests: python -m pytest -q tests"
