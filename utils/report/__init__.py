"""Figures, tables and the assignment's answers from training logs alone.

    python -m utils.report --log_dir logs --out plots

Reads `logs/<exp_id>/` (run_exp.py's metrics.jsonl, or the course notebook's *.txt files) and writes
to --out: experiment_<exp_id>.png per run, compare_<group>.png per comparison group of
utils.configs.GROUPS, results.md, results.tex (booktabs) and results.csv.

Exit status: 0 when at least one run was reported; 2 when there was nothing to report (no log folder,
no run folders, or no run with a completed epoch) — a one-line message then says how to make runs.
Partial, diverged and failed runs are reported with their status; only completed runs enter the
answers (fastest, best, averages), and everything left out is listed with its reason.
This module never imports torch or the training code, so it runs anywhere the logs are.
"""
import os
from dataclasses import dataclass, field

from utils.configs import GROUPS
from utils.report import markdown
from utils.report.compute import answers, is_smoke, mark_duplicates, run_label, summarise
from utils.report.plots import plot_group, plot_run
from utils.report.read import read_runs
from utils.report.tables import csv_text, latex_table

HOW_TO_RUN = ("train some first: `python run_exp.py --config 1 --log_dir {log_dir}` "
              "(or `--config all --smoke` for a quick CPU check), then rerun this report.")


@dataclass
class Report:
    log_dir: str
    out_dir: str
    runs: list = field(default_factory=list)  # RunRecord, sorted by configuration then folder
    rows: list = field(default_factory=list)  # results-table rows, one per run
    left_out: list = field(default_factory=list)  # (folder, reason): not in the report at all
    not_counted: list = field(default_factory=list)  # (label, reason): in the table, not in the answers
    answers: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    figure_notes: list = field(default_factory=list)
    tables: dict = field(default_factory=dict)  # "md"/"tex"/"csv" -> path


def sort_key(run):
    return (run.config if run.config is not None else 99, run.exp_id)


def group_figures(report):
    """One comparison figure per group that has at least one run; notes say what is missing."""
    for name, numbers in GROUPS.items():
        members = [r for r in report.runs if r.config in numbers]
        missing = [n for n in numbers if all(r.config != n for r in members)]
        if not members:
            report.figure_notes.append(f"compare_{name}.png not drawn: none of configurations "
                                       f"{', '.join(map(str, numbers))} has a run yet.")
            continue
        path = os.path.join(report.out_dir, f"compare_{name}.png")
        plot_group(name, members, missing, path)
        report.figures.append(path)


def write_text(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def generate_report(log_dir="logs", out_dir="plots", command=None):
    """Read every run under log_dir, write figures and tables to out_dir, and return the Report."""
    report = Report(log_dir, out_dir)
    runs, report.left_out = read_runs(log_dir)
    report.runs = sorted(runs, key=sort_key)
    report.rows = mark_duplicates([summarise(run) for run in report.runs])
    report.not_counted = [(row["label"], row["not_counted_why"]) for row in report.rows if not row["counted"]]
    report.answers = answers(report.rows)
    if not report.runs and not report.left_out:
        return report  # nothing there at all: write nothing
    os.makedirs(out_dir, exist_ok=True)
    if report.runs:
        for run in report.runs:
            path = os.path.join(out_dir, f"experiment_{run.exp_id}.png")
            plot_run(run, path)
            report.figures.append(path)
        group_figures(report)
        for kind, text in (("tex", latex_table(report.rows)), ("csv", csv_text(report.rows))):
            report.tables[kind] = os.path.join(out_dir, f"results.{kind}")
            write_text(report.tables[kind], text)
    command = command or f"python -m utils.report --log_dir {log_dir} --out {out_dir}"
    report.tables["md"] = os.path.join(out_dir, "results.md")
    write_text(report.tables["md"], markdown.render(report, command))
    return report


def summary_lines(report):
    """What the command prints: what was read, what was left out and why, the answers, the files."""
    lines = [f"Read {len(report.runs)} run(s) from {report.log_dir}: "
             + (", ".join(f"{run_label(r)} [{r.status}]" for r in report.runs) or "none usable")]
    lines += [f"  left out {name}: {reason}" for name, reason in report.left_out]
    lines += [f"  not compared {label}: {reason}" for label, reason in report.not_counted]
    a = report.answers
    if a.get("fastest"):
        lines.append(f"Fastest ({a['fastest_by']}): {a['fastest']['label']}, {a['fastest']['train_time_s']:.1f} s")
        lines.append(f"Best generalising: {a['best']['label']}, val ppl {a['best']['best_valid_ppl']:.2f}")
    smoke = sum(is_smoke(r.args) for r in report.runs)
    if smoke:
        lines.append(f"Note: {smoke} smoke run(s) (tiny budget): their numbers only show that the pipeline works.")
    if report.figures or report.tables:
        lines.append(f"Wrote {len(report.figures)} figure(s) and {len(report.tables)} table file(s) "
                     f"to {report.out_dir}")
    return lines
