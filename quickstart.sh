#!/usr/bin/env bash
# From a fresh clone, anywhere (the data is in data/; nothing outside the project is read):
# install what the kit and its tests need, build the offline stand-in embeddings once, run the
# smoke study (configurations 2 and 6: both models, real Wikitext-2, CPU) and make its report.
# Rerunning skips what is done. Then: python -m pytest -q tests   (the test suite)
# Best inside a virtual environment:  python -m venv .venv && . .venv/bin/activate && bash quickstart.sh
#
#   EMBEDDINGS=path/to/embeddings.npz bash quickstart.sh   # use GPT-1's file (or any) instead of building
#   SKIP_INSTALL=1 bash quickstart.sh                      # the environment is already set up
set -euo pipefail
cd "$(dirname "$0")"
EMBEDDINGS=${EMBEDDINGS:-data/embeddings.npz}
no_torch() {  # pip's own last line ("No matching distribution found for torch") says not what to do
  echo "error: pip could not install torch here (PyTorch's index unreachable?): install torch yourself" \
       "(e.g. pip install torch, or the command pytorch.org gives for your machine), then rerun bash quickstart.sh" >&2
  exit 1
}
if [ -z "${SKIP_INSTALL:-}" ]; then
  if python -c "import torch" 2>/dev/null; then
    # An installed torch (Colab's, a CUDA build of your own) is kept: requirements.txt only asks torch>=2.3.
    echo "Using the installed torch $(python -c 'import torch; print(torch.__version__)')."
  elif command -v nvidia-smi >/dev/null 2>&1; then
    # The package index's Linux torch is a CUDA build: right for a machine with an NVIDIA GPU.
    python -m pip install --quiet --disable-pip-version-check "torch>=2.3" || no_torch
  else
    # No NVIDIA GPU: the CPU build from PyTorch's CPU index (~200 MB instead of several GB of CUDA libraries).
    python -m pip install --quiet --disable-pip-version-check "torch>=2.3" --index-url https://download.pytorch.org/whl/cpu || no_torch
  fi
  python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
fi
[ -f "$EMBEDDINGS" ] || python -m utils.build_embeddings --out "$EMBEDDINGS"
python run_exp.py --config 2,6 --smoke --embeddings "$EMBEDDINGS" --print_every 1
python -m utils.report --log_dir logs_smoke --out plots_smoke
echo "Done: runs in logs_smoke/, figures and tables in plots_smoke/ (results.md). Tests: python -m pytest -q tests"
