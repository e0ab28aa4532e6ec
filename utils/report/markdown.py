"""`results.md`: the runs, the results table, the computed answers, figures, provenance and samples."""
import os

from utils.report.compute import is_smoke, run_label
from utils.report.tables import NOT_LOGGED, format_cell, markdown_table, memory_text

DEFINITIONS = """\
Definitions: perplexity is exp(mean cross-entropy per predicted token); "best" is the epoch with the
lowest validation perplexity; times are training wall-clock summed over epochs (evaluation excluded);
memory is GPU memory in MB, "not measured (CPU)" for runs without a GPU; "—" marks a value the run
did not log (old notebook runs have no parameter counts or peak memory). In results.csv an empty cell
is not logged and `nan` is not measured.
"""


def bullet_runs(report):
    lines = ["## Runs", ""] + ([] if report.runs else ["No run has a completed epoch yet."])
    for run in report.runs:
        notes = f" — {'; '.join(run.notes)}" if run.notes else ""
        lines.append(f"- {run_label(run)}: {run.status}, {len(run.epochs)} epoch(s) "
                     f"(logs/{run.exp_id}/{run.source if run.source != 'txt' else '*.txt'}){notes}")
    if report.left_out:
        lines += ["", "**Left out of the report:**", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in report.left_out]
    if report.not_counted:
        lines += ["", "**In the table but not in the answers below** (only completed runs are compared):", ""]
        lines += [f"- {label}: {reason}" for label, reason in report.not_counted]
    return lines


def average_table(entries, key, heading):
    lines = [f"| {heading} | Runs | Configurations | Mean train time (s) | Mean time/epoch (s) "
             "| Mean best val ppl | Geometric mean best val ppl |", "|---|---|---|---|---|---|---|"]
    for e in entries:
        lines.append(f"| {e[key]} | {e['n']} | {', '.join(map(str, e['members']))} | {e['mean_train_time_s']:.1f} "
                     f"| {e['mean_time_per_epoch_s']:.1f} | {format_cell('best_valid_ppl', e['mean_best_valid_ppl'])} "
                     f"| {format_cell('best_valid_ppl', e['geomean_best_valid_ppl'])} |")
    return lines if entries else ["No completed runs to average yet."]


def answer_lines(report):
    a = report.answers
    lines = ["## Answers", ""]
    if a["fastest"] is None:
        return lines + ["No completed run yet: the answers need at least one completed run.", ""]
    f, b = a["fastest"], a["best"]
    lines += [
        f"- **Fastest configuration** (by {a['fastest_by']}): {f['label']} — "
        f"{f['train_time_s']:.1f} s of training, {f['time_per_epoch_s']:.1f} s per epoch.",
        f"- **Best generalising configuration** (lowest validation perplexity): {b['label']} — "
        f"{format_cell('best_valid_ppl', b['best_valid_ppl'])} at epoch {b['best_epoch']}"
        f" (train ppl {format_cell('train_ppl_at_best', b['train_ppl_at_best'])}, "
        f"test ppl {format_cell('test_ppl', b['test_ppl'])}).",
        "",
        "### Averages per optimizer (one-layer runs, i.e. configurations 1-8, so depth does not bias AdamW)",
        "",
        *average_table(a["per_optimizer"], "optimizer", "Optimizer"),
        "",
        "### Averages per architecture (all completed runs)",
        "",
        *average_table(a["per_architecture"], "model", "Architecture"),
        "",
        "### Memory per configuration",
        "",
        "| Run | Peak GPU memory | Steady-state GPU memory |",
        "|---|---|---|",
    ]
    lines += [f"| {r['label']} | {memory_text(r['peak_memory_mb'])} | {memory_text(r['steady_memory_mb'])} |"
              for r in report.rows]
    return lines + [""]


def figure_lines(report):
    lines = ["## Figures", ""]
    for path in report.figures:
        name = os.path.basename(path)
        lines.append(f"![{name}]({name})")
    return lines + [""] + [f"- {note}" for note in report.figure_notes] + [""]


def embeddings_sha(run):
    embeddings = run.provenance.get("embeddings")
    return embeddings.get("sha256") if isinstance(embeddings, dict) else None


def provenance_lines(runs):
    lines = ["## Provenance", "", "| Run | Device | Precision | torch | Git commit | Embeddings sha256 |",
             "|---|---|---|---|---|---|"]
    for run in runs:
        p = run.provenance
        sha = embeddings_sha(run)
        cells = [p.get("device_name") or p.get("device"), p.get("precision"), p.get("torch_version"),
                 (p.get("git_commit") or "")[:10] or None, (sha or "")[:12] or None]
        lines.append(f"| {run_label(run)} | " + " | ".join(str(c) if c else NOT_LOGGED for c in cells) + " |")
    for key, what in (("git_commit", "code versions"), ("precision", "precisions")):
        if len({run.provenance.get(key) for run in runs if run.provenance.get(key)}) > 1:
            lines.append(f"\n**Warning:** the runs used different {what}; compare them with care.")
    if len({embeddings_sha(r) for r in runs} - {None}) > 1:
        lines.append("\n**Warning:** the runs used different embedding files; their perplexities are not comparable.")
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
    smoke = [run_label(r) for r in report.runs if is_smoke(r.args)]
    if smoke:
        lines += [f"> **Smoke runs** (tiny budget, a few batches): their numbers only show that the pipeline "
                  f"works — {'; '.join(smoke)}.", ""]
    lines += bullet_runs(report) + [""]
    if report.rows:
        lines += ["## Results table", "", markdown_table(report.rows), DEFINITIONS]
        lines += answer_lines(report) + figure_lines(report) + provenance_lines(report.runs) + sample_lines(report.runs)
    return "\n".join(lines).rstrip() + "\n"
