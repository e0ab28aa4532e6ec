"""Write notebooks/main.ipynb from the cells below, so the notebook is reviewed as Python.

    python notebooks/make_notebook.py

The notebook defines no model or training loop: it imports run_exp and utils.report. Paths and the
smoke preset can be set through environment variables (LM_DATA_FOLDER, LM_EMBEDDINGS, LM_LOG_DIR,
LM_PLOT_DIR, LM_SMOKE, and LM_CONFIGS for the sweep's list), which is how tests/test_notebook.py runs
it in a temporary folder.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "main.ipynb")

INTRO = """\
# IFT6135 Assignment 2: language modelling on Wikitext-2

This notebook runs the study's 12 configurations (LSTM and MiniGPT1, four optimizers, 1/2/4 layers) and
writes the report the assignment asks for: one figure per run, comparison figures, the results table
(Markdown, LaTeX, CSV) and the computed answers.

It works in **Google Colab** (it mounts your Drive and installs the requirements) and in **local
Jupyter** (it uses this repository). All the code lives in the project: `run_exp.py` trains,
`utils/report/` analyses the logs (`python -m utils.report --log_dir logs --out plots` does the same
from a terminal).

Order: setup → GPU check → **smoke preset switch** → paths → embeddings → configuration 1 →
all 12 (completed ones are skipped, interrupted ones resume) → report. While runs train, their
validation-perplexity curves are redrawn after each epoch, read from the logs."""

SETUP = """\
#@title The project: on Colab, a copy on your Google Drive (cloned once); elsewhere, this repository
import os
import subprocess
import sys

PROJECT_FOLDER = "/content/gdrive/MyDrive/ift6135-a2"  #@param {type:"string"}
REPO_URL = ""  #@param {type:"string"}

try:
    from google.colab import drive
    IN_COLAB = True
except ImportError:
    IN_COLAB = False

if IN_COLAB:
    drive.mount("/content/gdrive")
    if not os.path.isfile(os.path.join(PROJECT_FOLDER, "run_exp.py")):
        if not REPO_URL:
            raise FileNotFoundError(f"No project in {PROJECT_FOLDER}: set REPO_URL to clone it there, or upload "
                                    "the project folder to your Drive and set PROJECT_FOLDER to it.")
        subprocess.run(["git", "clone", REPO_URL, PROJECT_FOLDER], check=True)
    os.chdir(PROJECT_FOLDER)
    # Colab's torch is built for its GPU and driver: keep it. Install only what the project adds
    # on top (matplotlib, tqdm, scipy, submitit...), never a torch that would replace it.
    with open("requirements.txt") as handle:
        wanted = [line.split("#")[0].strip() for line in handle]
    wanted = [w for w in wanted if w and not w.lower().startswith("torch")]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *wanted], check=True)
elif not os.path.isfile("run_exp.py") and os.path.isfile(os.path.join("..", "run_exp.py")):
    os.chdir("..")  # local Jupyter starts in notebooks/; the project root is one level up
if not os.path.isfile("run_exp.py"):
    raise FileNotFoundError(f"run_exp.py is not in {os.getcwd()}: set PROJECT_FOLDER to the project folder.")
if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
print("Project folder:", os.getcwd())"""

GPU = """\
import torch


class NoGPU(Exception):
    def _render_traceback_(self):  # Jupyter shows this one line instead of a traceback
        return [str(self)]


if torch.cuda.is_available():
    DEVICE = "cuda"
    print("GPU:", torch.cuda.get_device_name(0))
elif IN_COLAB and os.environ.get("LM_SMOKE") != "1":
    # Stop here rather than train the smoke preset on a CPU in place of the study.
    raise NoGPU("No GPU in this Colab runtime: choose Runtime > Change runtime type > GPU, then run all cells "
                "again (or, to check the pipeline on this CPU with the smoke preset, run %env LM_SMOKE=1 first).")
else:
    DEVICE = "cpu"
    print("No GPU: on a CPU only the smoke preset is practical (it is chosen below).")"""

SMOKE_NOTE = """\
## Smoke preset switch

`SMOKE = True` gives every run a tiny budget (a few batches per split, see `SMOKE` in
`utils/train/settings.py`): the whole pipeline, data to report, runs on a CPU in a few minutes, but
its numbers mean nothing. `SMOKE = False` runs the assignment's full budget (10 epochs per
configuration, on a GPU). By default it follows the hardware found above; set it explicitly to
override. Smoke runs write to `logs_smoke/` and `plots_smoke/` (the same place as `run_exp.py
--smoke`), so they are never mistaken for, or skipped in place of, the real runs."""

SMOKE = """\
# ============================ SMOKE PRESET SWITCH ============================
SMOKE = DEVICE == "cpu"  # True: tiny CPU check; False: the full study (GPU)
# =============================================================================
if "LM_SMOKE" in os.environ:  # tests/test_notebook.py sets it
    SMOKE = os.environ["LM_SMOKE"] == "1"
print("Smoke preset:", SMOKE)"""

PATHS = """\
# Paths, relative to the project folder; environment variables override them (the test uses this).
DATA_FOLDER = os.environ.get("LM_DATA_FOLDER", "data")  # the project's copy of the course's Wikitext-2
EMBEDDINGS = os.environ.get("LM_EMBEDDINGS", "data/embeddings.npz")
LOG_DIR = os.environ.get("LM_LOG_DIR", "logs_smoke" if SMOKE else "logs")
PLOT_DIR = os.environ.get("LM_PLOT_DIR", "plots_smoke" if SMOKE else "plots")

# Which configurations the sweep runs: "all", or a list like "1,5-8".
from utils.configs import parse_config_list

CONFIG_NUMBERS = parse_config_list(os.environ.get("LM_CONFIGS", "all"))

# What every run below gets on top of its configuration (model, layers, optimizer, epochs...).
# print_every: no progress lines within a split (its last step still prints): the curves show progress.
OVERRIDES = dict(data_folder=DATA_FOLDER, embeddings=EMBEDDINGS, log_dir=LOG_DIR, device=DEVICE, smoke=SMOKE,
                 print_every=10**6)
OVERRIDES"""

EMBEDDINGS = """\
# The frozen GPT-1 embeddings (the only download). Colab: the course's file; offline, or if the
# download fails: a stand-in built from the training split (utils.build_embeddings, under a minute, once).
import urllib.request

from utils.data.embeddings import EMBEDDINGS_URL, EmbeddingsError, read_embeddings


def build_embeddings():
    print("Building stand-in embeddings offline (about a minute)...")
    command = [sys.executable, "-m", "utils.build_embeddings", "--data_folder", DATA_FOLDER, "--out", EMBEDDINGS]
    subprocess.run(command, check=True)


if not os.path.isfile(EMBEDDINGS):
    os.makedirs(os.path.dirname(EMBEDDINGS) or ".", exist_ok=True)
    try:
        if not IN_COLAB:
            raise OSError("no download outside Colab")
        urllib.request.urlretrieve(EMBEDDINGS_URL, EMBEDDINGS)  # dl=1: the file, not Dropbox's web page
        read_embeddings(EMBEDDINGS)
    except (OSError, EmbeddingsError) as err:
        print(f"No downloaded embeddings ({err}).")
        if os.path.exists(EMBEDDINGS):
            os.remove(EMBEDDINGS)
        build_embeddings()
tokens, position = read_embeddings(EMBEDDINGS)
print(f"{EMBEDDINGS}: tokens {tuple(tokens.shape)}, positions {tuple(position.shape)}")
del tokens, position"""

CURVES = """\
# The validation perplexity of every run so far, read from LOG_DIR/<run>/metrics.jsonl (what the runs
# wrote, never their training state), redrawn whenever a run finishes an epoch while a cell below trains.
import io
import math
import threading
from contextlib import contextmanager

from utils.report.fmt import run_label
from utils.report.plots import integer_epochs, new_figure, style_axis  # Agg, no pyplot: safe in a thread
from utils.report.read import read_runs
from utils.runs.schema import METRICS


def plot_curves(log_dir):
    figure = new_figure(8, 4.5)
    ax, values, epochs = figure.subplots(), [], {1}
    for run in read_runs(log_dir)[0]:
        points = [(e["epoch"], e["valid_ppl"]) for e in run.epochs if math.isfinite(e["valid_ppl"])]
        if points:
            ax.plot(*zip(*points), marker="o", label=f"{run_label(run)} ({run.status})")
            values += [ppl for _, ppl in points]
            epochs |= {epoch for epoch, _ in points}
    style_axis(ax, f"Validation perplexity so far ({log_dir})", "epoch", "validation perplexity", values)
    integer_epochs(ax, sorted(epochs))
    if ax.lines:
        ax.legend(fontsize=8, ncol=2)
    return figure


def written(log_dir):
    \"\"\"(folder, size, mtime) of every run's metrics.jsonl: it changes when a run logs an epoch.\"\"\"
    names = sorted(os.listdir(log_dir)) if os.path.isdir(log_dir) else []
    files = [os.path.join(log_dir, name, METRICS) for name in names]
    return [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files if os.path.isfile(f)]


@contextmanager
def live_curves(log_dir, seconds=5.0):
    \"\"\"While the body runs, one figure in the cell, redrawn after each logged epoch (checked every few seconds).\"\"\"
    from IPython.display import Image, display

    def draw():
        buffer = io.BytesIO()
        plot_curves(log_dir).savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        return Image(data=buffer.getvalue())

    def watch(seen):
        while not stop.wait(seconds):
            if written(log_dir) != seen:
                seen = written(log_dir)
                handle.update(draw())

    seen, stop = written(log_dir), threading.Event()
    handle = display(draw(), display_id=True)
    thread = threading.Thread(target=watch, args=(seen,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        handle.update(draw())"""

EPOCH_ONE_NOTE = """\
## One configuration

Configuration 1 (LSTM, 1 layer, Adam). What to expect: the figure of validation perplexity by
epoch, redrawn after each epoch, and a few lines per epoch (each split's last step: the batch loss,
the perplexity, tokens/s and the time left). Every perplexity rests on the
embeddings: GPT-1's, or the offline stand-in (the report says which). With the stand-in both models
start near 10 nats per token (perplexity ~20,000) and come below the unigram baseline (about
1,300) within the first epoch; with embeddings that do not foresee MiniGPT1's
LayerNorm (the older ppmi-svd stand-in) its first epoch shows enormous perplexities (1e20 and more),
because its post-LayerNorm features meet the tied rows and the *current* token gets a huge logit.
Such an epoch-1 number says nothing about the model; the report marks it."""

ONE = """\
from run_exp import run_config, run_sweep

# Configuration 1 alone first: a broken setup fails here, before eleven more runs are started.
with live_curves(LOG_DIR):
    summary = run_config(1, **OVERRIDES)
print(summary)
if summary["status"] not in ("completed", "skipped"):
    raise RuntimeError(f"Configuration 1 {summary['status']}: {summary['message']}")"""

SWEEP = """\
# All 12 in order: completed runs are skipped, interrupted ones resume from their checkpoint,
# and a failed or diverged run does not stop the others (the summary says which).
with live_curves(LOG_DIR):
    summaries = run_sweep(CONFIG_NUMBERS, **OVERRIDES)"""

REPORT = """\
from IPython.display import Image, Markdown, display

from utils.report import generate_report, summary_lines

report = generate_report(LOG_DIR, PLOT_DIR)
print("\\n".join(summary_lines(report)))"""

TABLES = """\
# results.md without its image links (they are relative to PLOT_DIR; the figures follow below).
if "md" in report.tables:
    with open(report.tables["md"]) as handle:
        display(Markdown("\\n".join(line for line in handle.read().splitlines() if not line.startswith("!["))))"""

FIGURES = """\
# The comparisons first (they answer the questions), then one 3x2 figure per run.
for path in sorted(report.figures, key=lambda p: not os.path.basename(p).startswith("compare_")):
    display(Image(filename=path, width=900))"""

OUTRO = """\
The files are in `PLOT_DIR`: `results.md`, `results.tex` (paste into the report; needs the
`booktabs` and `graphicx` packages), `results.csv`, `compare_*.png` and `experiment_<id>.png`.
To refresh them after more runs finish, rerun the report cells or
`python -m utils.report --log_dir logs --out plots`."""


def new_markdown_cell(source):
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def new_code_cell(source, metadata=None):
    return {"cell_type": "code", "execution_count": None, "metadata": metadata or {}, "outputs": [], "source": source}


def build():
    """The notebook as a plain dict (nbformat's v4 layout): the fast tier compares it without nbformat."""
    cells = [
        new_markdown_cell(INTRO),
        new_code_cell(SETUP),
        new_code_cell(GPU),
        new_markdown_cell(SMOKE_NOTE),
        new_code_cell(SMOKE),
        new_code_cell(PATHS, metadata={"tags": ["parameters"]}),
        new_code_cell(EMBEDDINGS),
        new_code_cell(CURVES),
        new_markdown_cell(EPOCH_ONE_NOTE),
        new_code_cell(ONE),
        new_markdown_cell("## All 12 configurations"),
        new_code_cell(SWEEP),
        new_markdown_cell("## Report: tables, answers and figures"),
        new_code_cell(REPORT),
        new_code_cell(TABLES),
        new_code_cell(FIGURES),
        new_markdown_cell(OUTRO),
    ]
    for number, cell in enumerate(cells):
        cell["id"] = f"cell-{number:02d}"  # fixed ids: regenerating the notebook gives the same file
    metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "accelerator": "GPU",  # Colab opens it on a GPU runtime
        "colab": {"provenance": []},
    }
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def main(out=OUT):
    import nbformat  # requirements-dev.txt

    notebook = nbformat.from_dict(build())
    nbformat.validate(notebook)
    nbformat.write(notebook, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
