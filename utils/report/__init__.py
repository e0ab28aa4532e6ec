"""Figures, tables and the assignment's answers from training logs alone (`python -m utils.report
--log_dir logs --out plots`; its files: docs/study.md). Only completed runs enter the answers; whatever
is left out is listed with its reason. No torch is imported, so it runs wherever logs are."""
import os
from dataclasses import dataclass, field

from utils.report import markdown
from utils.report.compute import answers, build_groups, seed_order, summarise
from utils.report.fmt import lr_text, run_arm, run_label, run_seed, short_meaning, short_run, stat_text
from utils.report.plots import member_runs, plot_group, plot_run
from utils.report.read import read_json, read_runs, read_tuning
from utils.report.tables import csv_text, group_csv_text, latex_table
from utils.study.configs import GROUPS

# The course's reference runs: figures from three public copies of the assignment, with their sources.
REFERENCE = os.path.join(os.path.dirname(__file__), "course_runs.json")
# Both commands write into the folder being reported (a smoke run without --log_dir goes to logs_smoke/).
HOW_TO_RUN = ("train some first: `python run_exp.py --config 1 --log_dir {log_dir}` (or `python run_exp.py "
              "--config all --smoke --log_dir {log_dir}` for a quick CPU check), then rerun this report.")


@dataclass
class Report:
    log_dir: str
    out_dir: str
    runs: list = field(default_factory=list)  # RunRecord, sorted by configuration, arm, seed, folder
    rows: list = field(default_factory=list)  # results-table rows, one per run
    groups: list = field(default_factory=list)  # SeedGroup: one per configuration and arm, over seeds
    left_out: list = field(default_factory=list)  # (folder, reason): not in the report at all
    not_counted: list = field(default_factory=list)  # (label, reason): in the table, not in the answers
    answers: dict = field(default_factory=dict)  # "course"/"tuned" -> compute.arm_answers (or None)
    tuning: dict | None = None  # <log_dir>/tuning/tuning.json, when the search ran
    tuning_problem: str | None = None  # why tuning.json could not be used
    reference: dict = field(default_factory=lambda: {"configs": {}})  # utils/report/course_runs.json
    figures: list = field(default_factory=list)
    figure_notes: list = field(default_factory=list)
    tables: dict = field(default_factory=dict)  # "md"/"tex"/"csv"/"groups_csv" -> path


def read_report(log_dir, out_dir):
    """The Report's numbers, before anything is drawn or written."""
    report, stubs = Report(log_dir, out_dir, reference=read_json(REFERENCE)), []
    runs, report.left_out = read_runs(log_dir, stubs)  # stubs: folders with args.json but no epoch
    report.tuning, report.tuning_problem = read_tuning(log_dir)
    report.runs = sorted(runs, key=lambda run: (run.config or 99, run_arm(run.args) != "course",
                                                 seed_order(run_seed(run.args)), run.exp_id))
    report.rows = [summarise(run) for run in report.runs]
    report.groups = build_groups(report.runs, report.rows, stubs)
    report.not_counted = [(row["label"], row["not_counted_why"]) for row in report.rows if not row["counted"]]
    report.answers = answers(report.groups)
    return report


def write_text(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def generate_report(log_dir="logs", out_dir="plots", command=None):
    """Read every run under log_dir, write figures and tables to out_dir, and return the Report."""
    report = read_report(log_dir, out_dir)
    if not report.runs and not report.left_out and report.tuning is None and report.tuning_problem is None:
        return report  # nothing there at all: write nothing
    os.makedirs(out_dir, exist_ok=True)
    for run in report.runs:
        report.figures.append(os.path.join(out_dir, f"experiment_{run.exp_id}.png"))
        plot_run(run, report.figures[-1])
    for name, numbers in GROUPS.items() if report.runs else ():
        members = [g for g in report.groups if g.config in numbers and member_runs(g)]
        if not members:
            report.figure_notes.append(f"compare_{name}.png not drawn: none of configurations "
                                       f"{', '.join(map(str, numbers))} has a run yet.")
            continue
        report.figures.append(os.path.join(out_dir, f"compare_{name}.png"))
        plot_group(name, members, [n for n in numbers if all(g.config != n for g in members)], report.figures[-1])
    tables = (("tex", "results.tex", latex_table), ("csv", "results.csv", lambda _: csv_text(report.rows)),
              ("groups_csv", "results_groups.csv", group_csv_text)) if report.runs else ()
    for kind, name, text in tables:
        report.tables[kind] = os.path.join(out_dir, name)
        write_text(report.tables[kind], text(report.groups))
    report.tables["md"] = os.path.join(out_dir, "results.md")
    write_text(report.tables["md"], markdown.render(report, command or
                                                    f"python -m utils.report --log_dir {log_dir} --out {out_dir}"))
    return report


def answer_summary(a, prefix):
    """The console's fastest / best lines for one arm, with intervals where there are seeds."""
    if not a or a["fastest"] is None:
        return []
    f, b, key = a["fastest"], a["best"], a["fastest_key"]
    lines = [f"{prefix}Fastest ({a['fastest_by']}): {f.label}, {stat_text(f.stats[key], 'seconds')} s",
             f"{prefix}Best generalising: {b.label}, val ppl {stat_text(b.stats['best_valid_ppl'])}"]
    for i, (g, versus) in enumerate(((f, a["fastest_versus"]), (b, a["best_versus"]))):
        ties = [other.name for other, c in versus if c["distinguishable"] is False]
        lines[i] += (f" (geometric mean [95% t interval], n={g.n})" if g.n > 1 else "") + (
            f"; not distinguishable at 95% from {', '.join(ties)}" if ties else "")
    return lines + ([f"{prefix}One seed per configuration: no confidence interval can be computed."]
                    if a["one_seed"] else [])


def summary_lines(report):
    """What the command prints: what was read, what was left out and why, the answers, the files."""
    lines = [f"Read {len(report.runs)} run(s) from {report.log_dir}: "
             + (", ".join(f"{run_label(r)} [{r.status}]" for r in report.runs) or "none usable")]
    lines += [f"  left out {name}: {reason}" for name, reason in report.left_out]
    lines += [f"  not compared {label}: {reason}" for label, reason in report.not_counted]
    lines += answer_summary(report.answers.get("course"), "")
    lines += answer_summary(report.answers.get("tuned"), "At tuned lr: ")
    if report.tuning:
        choice = report.tuning.get("choice") or {}
        lines.append("Learning-rate search chose: " + (", ".join(f"{k} lr {lr_text(v)}" for k, v in choice.items())
                                                       or "nothing"))
    elif report.tuning_problem:
        lines.append(f"Learning-rate search record unusable: {report.tuning_problem}")
    marks = [short_run(r.args) for r in report.runs]
    lines += [f"Note: {marks.count(m)} {m} run(s): {short_meaning(m)}." for m in dict.fromkeys(marks) if m]
    return lines + [f"Wrote {len(report.figures)} figure(s) and {len(report.tables)} table file(s) to "
                    f"{report.out_dir}"] * bool(report.figures or report.tables)
