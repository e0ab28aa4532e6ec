"""`results.md`: the runs, the tables over seeds and per run, the answers per arm, the learning-rate
search, figures, provenance and samples."""
import os
from urllib.parse import quote

from utils.report.aggregate import count_text
from utils.report.answers_md import METHOD, arm_lines
from utils.report.describe import (EPOCH1_NOTE, STANDIN_COST, STANDIN_PREFIX, astronomical_start, device_text,
                                   embeddings_sha, embeddings_text, is_smoke, run_label)
from utils.report.tables import NOT_LOGGED, group_table, markdown_table
from utils.report.tuning import optimizer_side_by_side, search_lines, side_by_side_lines

DEFINITIONS = """\
Definitions: perplexity is exp(mean cross-entropy per predicted token), written 1.23e22 where huge;
"best" is the epoch with the lowest validation perplexity; times are training wall-clock summed over
epochs (evaluation excluded); memory is GPU memory in MB, "not measured (CPU)" for runs without a GPU;
"—" marks a value the run did not log (old notebook runs have no parameter counts or peak memory);
a blank optimizer setting is one the run's optimizer does not use; "(tuned)" marks an lr chosen by the
learning-rate search. In results.csv an empty cell is not logged (or not used) and `nan` is not measured.
"""
BAND = ("Comparison figures draw, per configuration, the geometric mean over its completed seeds with a "
        "shaded band from the lowest to the highest seed (min-max, not a confidence interval); solid lines are "
        "at the course's lr, dashed ones at the tuned lr.")


def run_source(run):
    """Where the run's numbers came from, by its real path under --log_dir."""
    return os.path.join(run.path, run.source if run.source != "txt" else "*.txt")


def bullet_runs(report):
    lines = ["## Runs", ""] + ([] if report.runs else ["No run has a completed epoch yet."])
    for run in report.runs:
        notes = f" — {'; '.join(run.notes)}" if run.notes else ""
        lines.append(f"- {run_label(run)}: {run.status}, {len(run.epochs)} epoch(s) (`{run_source(run)}`){notes}")
    if report.left_out:
        lines += ["", "**Left out of the report:**", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in report.left_out]
    if report.not_counted:
        lines += ["", "**In the tables but not in the answers below** (only completed runs are compared, "
                      "one per seed of a configuration):", ""]
        lines += [f"- {label}: {reason}" for label, reason in report.not_counted]
    return lines


def embeddings_lines(runs):
    """Which embeddings the perplexities rest on; a warning when runs used different files."""
    kinds = {}
    for run in runs:
        kinds.setdefault(embeddings_text(run, long=True), []).append(run.exp_id)
    if len(kinds) == 1:
        lines = [f"Embeddings: all runs used {next(iter(kinds))}."]
    else:
        lines = ["Embeddings: " + "; ".join(f"{text} (runs {', '.join(ids)})" for text, ids in kinds.items()) + "."]
    if len({embeddings_sha(r) for r in runs} - {None}) > 1:
        lines.append("\n**Warning:** the runs used different embedding files; their perplexities are not comparable "
                     "(runs of one configuration with different files are never averaged together).")
    if any(text.startswith(STANDIN_PREFIX) for text in kinds):
        lines.append("\n" + STANDIN_COST)
    return lines + [""]


def group_lines(report):
    """The table over seeds; with one run per configuration it would repeat the per-run table, so
    a sentence says so instead."""
    if all(g.n_of <= 1 and len(g.rows) == 1 for g in report.groups):
        return ["## Results per configuration", "", "One run per configuration (no seeds to aggregate): the "
                "per-run table below is the per-configuration table; results.tex holds it for print.", ""]
    table, dropped = group_table(report.groups)
    missing = [f"- {g.label}: {count_text(g)}" for g in report.groups if g.absent]
    lines = ["## Results per configuration (over seeds)", "", METHOD, "", table]
    lines += [dropped, ""] if dropped else []
    return lines + (["Seeds not averaged:", "", *missing, ""] if missing else [])


def run_table_lines(report):
    table, dropped = markdown_table(report.rows)
    lines = ["## Results per run", "", table] + ([dropped, ""] if dropped else []) + [DEFINITIONS]
    # The table shows the best epoch: epoch 1 only when a run has no better one (a 1-epoch smoke run).
    first = any(astronomical_start(run) and row["best_epoch"] == 1 for run, row in zip(report.runs, report.rows))
    return lines + ([f"Note on epoch 1: {EPOCH1_NOTE}", ""] if first else [])


def answer_lines(report):
    a = report.answers
    course = [g for g in report.groups if g.arm == "course"]
    lines = arm_lines(a.get("course"), course, "## Answers (runs at the course's learning rate)")
    if a.get("tuned"):
        tuned = [g for g in report.groups if g.arm == "tuned"]
        lines += arm_lines(a["tuned"], tuned, "## Answers at the tuned learning rates")
    return lines


def figure_lines(report):
    lines = ["## Figures", "", BAND, ""]
    if any(astronomical_start(r) for r in report.runs):
        lines += [f"Note on epoch 1: {EPOCH1_NOTE}", ""]
    for path in report.figures:
        lines.append(image_link(os.path.basename(path)))
    return lines + [""] + [f"- {note}" for note in report.figure_notes] + [""]


def image_link(name):
    """A Markdown image of a file beside results.md; a run name with spaces, brackets or parentheses
    keeps a working link (percent-encoded destination, escaped alt text)."""
    alt = name.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return f"![{alt}]({quote(name)})"


def provenance_lines(runs):
    lines = ["## Provenance", "", "| Run | Device | Precision | torch | Git commit | Embeddings | sha256 |",
             "|---|---|---|---|---|---|---|"]
    for run in runs:
        p = run.provenance
        cells = [device_text(run), p.get("precision"), p.get("torch_version"), (p.get("git_commit") or "")[:10],
                 embeddings_text(run), (embeddings_sha(run) or "")[:12]]
        lines.append(f"| {run_label(run)} | " + " | ".join(str(c) if c else NOT_LOGGED for c in cells) + " |")
    for key, what in (("git_commit", "code versions"), ("precision", "precisions"), ("device_name", "devices")):
        if len({run.provenance.get(key) for run in runs if run.provenance.get(key)}) > 1:
            lines.append(f"\n**Warning:** the runs used different {what}; compare them with care.")
    return lines + [""]


def sample_lines(runs):
    lines = []
    for run in runs:
        for sample in run.samples:
            if not isinstance(sample, dict):
                continue
            text = str(sample.get("text", "")).strip().replace("\n", "\n> ")
            lines += [f"**{run_label(run)}** — prompt: `{str(sample.get('prompt', '')).replace('`', chr(39))}`", "",
                      f"> {text}", ""]
    return ["## Generated text samples", "", *lines] if lines else []


def render(report, command):
    """The whole results.md as a string."""
    lines = ["# Wikitext-2 language modelling: results", "",
             f"Generated by `{command}` from `{report.log_dir}`: {len(report.runs)} run(s) reported, "
             f"{len(report.left_out)} left out.", ""]
    lines += embeddings_lines(report.runs) if report.runs else []
    smoke = [run_label(r) for r in report.runs if is_smoke(r.args)]
    if smoke:
        lines += [f"> **Smoke runs** (tiny budget, a few batches): their numbers only show that the pipeline "
                  f"works — {'; '.join(smoke)}.", ""]
    lines += bullet_runs(report) + [""]
    if report.rows:
        lines += group_lines(report) + run_table_lines(report) + answer_lines(report)
        lines += optimizer_side_by_side(report.answers) + side_by_side_lines(report.groups, report.tuning)
    lines += search_lines(report.tuning, report.tuning_problem, report.log_dir)
    if report.rows:
        lines += figure_lines(report) + provenance_lines(report.runs) + sample_lines(report.runs)
    return "\n".join(lines).rstrip() + "\n"
