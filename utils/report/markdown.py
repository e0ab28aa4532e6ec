"""results.md: the runs, the tables over seeds and per run, the answers per arm, the learning-rate search,
the course's reference runs beside the student's, what a run's start says, figures, provenance, samples."""
import os
from urllib.parse import quote

from utils.report.answers import METHOD, arm_lines, optimizer_side_by_side, search_lines, side_by_side_lines
from utils.report.compute import UNIFORM_NATS, reference_check, start_problem
from utils.report.fmt import STANDIN_COST, STANDIN_PREFIX, device_text, embeddings_record, embeddings_text, ppl_text
from utils.report.fmt import run_label, short_meaning, short_run
from utils.report.tables import NOT_LOGGED, absent_text, group_table, markdown_table, md_table

DEFINITIONS = """\
Definitions: perplexity is exp(mean cross-entropy per predicted token), written 1.23e22 where huge;
"best" is the epoch with the lowest validation perplexity; the test perplexity is the final model's
(after the last epoch, not at the best one); times are training wall-clock summed over epochs
(evaluation excluded); memory is GPU memory in MB, "not measured (CPU)" for runs without a GPU; "—"
marks a value the run did not log (the course notebook's save_logs records no parameter counts or peak
memory); a blank optimizer setting is one the run's optimizer does not use; "(tuned)" marks an lr
chosen by the learning-rate search. In results.csv an empty cell is not logged (or not used) and `nan`
is not measured.
"""
BAND = ("Comparison figures draw, per configuration, the geometric mean over its completed seeds with a "
        "shaded band from the lowest to the highest seed (min-max, not a confidence interval); solid lines are "
        "at the course's lr, dashed ones at the tuned lr.")
EPOCH1_NOTE = ("MiniGPT1's epoch-1 numbers are astronomically high here: its post-LayerNorm features meet the tied "
               "embedding rows, so the current token gets a huge logit and training starts far above uniform "
               f"({UNIFORM_NATS:.1f} nats/token): 52-64 nats/token with the ppmi-svd stand-in, 44-48 with GPT-1's "
               "embeddings under the course's initialisation. That first-epoch perplexity says nothing about the "
               "model; read the later epochs, or start with `--init stable` (the kit's initialisation).")
CAUSES = "other embeddings, another lr, batch size, number of epochs, --max_batches or initialisation"


def bullet_runs(report):
    lines = ["## Runs", ""] + ([] if report.runs else ["No run has a completed epoch yet."])
    for run in report.runs:
        notes = f" — {'; '.join(run.notes)}" if run.notes else ""
        where = os.path.join(run.path, run.source if run.source != "txt" else "*.txt")
        lines.append(f"- {run_label(run)}: {run.status}, {len(run.epochs)} epoch(s) (`{where}`){notes}")
    if report.left_out:
        lines += ["", "**Left out of the report:**", ""] + [f"- `{name}`: {why}" for name, why in report.left_out]
    if report.not_counted:
        lines += ["", "**In the tables but not in the answers below** (only completed runs are compared, "
                      "one per seed of a configuration):", ""]
        lines += [f"- {label}: {why}" for label, why in report.not_counted]
    return lines + [""]


def embeddings_lines(runs):
    kinds = {}
    for run in runs:
        kinds.setdefault(embeddings_text(run, long=True), []).append(run.exp_id)
    lines = [f"Embeddings: all runs used {next(iter(kinds))}." if len(kinds) == 1 else
             "Embeddings: " + "; ".join(f"{text} (runs {', '.join(ids)})" for text, ids in kinds.items()) + "."]
    if len({embeddings_record(r).get("sha256") for r in runs} - {None}) > 1:
        lines.append("\n**Warning:** the runs used different embedding files; their perplexities are not comparable "
                     "(runs of one configuration with different files are never averaged together).")
    return lines + (["\n" + STANDIN_COST] if any(t.startswith(STANDIN_PREFIX) for t in kinds) else []) + [""]


def group_lines(report):
    """The table over seeds; with one run per configuration a sentence says the per-run table is it."""
    if all(g.n_of <= 1 and len(g.rows) == 1 for g in report.groups):
        return ["## Results per configuration", "", "One run per configuration (no seeds to aggregate): the "
                "per-run table below is the per-configuration table; results.tex holds it for print.", ""]
    table, dropped = group_table(report.groups)
    missing = [f"- {g.label}: n={g.n} of {g.n_of} ({absent_text(g)})" for g in report.groups if g.absent]
    return (["## Results per configuration (over seeds)", "", METHOD, "", table] + ([dropped, ""] if dropped else [])
            + (["Seeds not averaged:", "", *missing, ""] if missing else []))


def reference_lines(report):
    """The course's reference runs (utils/report/course_runs.json) beside each configuration at the course's lr."""
    checks = [(g, c) for g, c in ((g, reference_check(g, report.reference)) for g in report.groups) if c]
    if not checks:
        return []
    ref, lines = report.reference, ["## Against the course's reference runs", ""]
    if not any(c["applies"] for _, c in checks):
        why = "the kit's stand-in embeddings" if any(c["applies"] is False for _, c in checks) else \
            "embeddings they did not record"
        return lines + [f"These runs used {why}, not GPT-1's: the reference (made with GPT-1's embeddings) does "
                        "not apply to them.", ""]
    lines += [ref["about"] + " Sources: " + "; ".join(f"{k}: {v}" for k, v in ref["sources"].items()) + ".", ""]
    span = lambda lo_hi: f"{ppl_text(lo_hi[0])}-{ppl_text(lo_hi[1])}"  # noqa: E731
    table, words = [], []
    for g, c in checks:
        if not c["applies"]:
            words.append(f"- {g.label}: the reference does not apply (stand-in or unrecorded embeddings).")
            continue
        mine = {m: ppl_text((g.stats.get(k) or {}).get("mean")) for m, k in (("valid", "best_valid_ppl"),
                                                                            ("test", "test_ppl"))}
        table.append([g.label, mine["valid"], span(c["valid"]), mine["test"], span(c["test"])])
        outside = [f"{what} {mine[m]} is {abs(off):.0%} {'above' if off > 0 else 'below'} the reference range "
                   f"{span(c[m])}" for m, what in (("valid", "best val ppl"), ("test", "test ppl"))
                   for off in [c["off"].get(m, 0.0)] if abs(off) > ref["tolerance"]]
        if c["checked"] and outside:
            differs = f"; this run differs in {', '.join(c['differs'])}" if c["differs"] else ""
            words.append(f"- {g.label}: {'; '.join(outside)}. That usually comes from {CAUSES}{differs}.")
        elif c["note"]:
            words.append(f"- {g.label}: {c['note']}")
    tolerance = f"{ref['tolerance']:.0%}"
    lines += md_table(["Config", "Best val ppl", "Reference best val ppl", "Test ppl", "Reference test ppl"], table)
    return lines + ["", f"Outside the range by more than {tolerance} (configurations "
                        f"{ref['checked_configs'][0]}-{ref['checked_configs'][-1]}, where the copies agree):", "",
                    *(words or [f"- none: every checked configuration is within {tolerance} of the reference."]), ""]


def start_lines(report):
    """What a start that did not learn means, and that `--init stable` exists."""
    lines, far = [], False
    for run in report.runs:
        kind, value = start_problem(run) or (None, None)
        if kind == "far above uniform":
            far = True
            what = (f"its epoch 1 was at {value:.1f} nats/token, far above uniform ({UNIFORM_NATS:.1f} = ln 40,479): "
                    "the initialisation, not learning, set those numbers")
        elif kind == "stalled":
            what = (f"its validation perplexity never moved ({ppl_text(value[0])}-{ppl_text(value[1])} over "
                    f"{len(run.epochs)} epochs), like the course's configuration 12 stuck near 1,480")
        else:
            continue
        hint = "it already used `--init stable`" if run.args.get("init") == "stable" else \
            "`--init stable` (the kit's initialisation) exists for this; `--init course` is the course's"
        lines.append(f"- {run_label(run)}: {what}; {hint}.")
    lines += ["", f"Note on epoch 1: {EPOCH1_NOTE}"] if far else []
    return ["## Starts that did not learn", "", *lines, ""] if lines else []


def figure_lines(report):
    """Image links that survive spaces and brackets in a file's name, then why a figure was not drawn."""
    names = [os.path.basename(p) for p in report.figures]
    alts = [n.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]") for n in names]
    return (["## Figures", "", BAND, ""] + [f"![{alt}]({quote(n)})" for alt, n in zip(alts, names)] + [""]
            + [f"- {note}" for note in report.figure_notes] + [""])


def provenance_lines(runs):
    rows = []
    for run in runs:
        p = run.provenance
        cells = [device_text(run), p.get("precision"), p.get("torch_version"), (p.get("git_commit") or "")[:10],
                 embeddings_text(run), (embeddings_record(run).get("sha256") or "")[:12]]
        rows.append([run_label(run)] + [str(c) if c else NOT_LOGGED for c in cells])
    lines = ["## Provenance", "", *md_table(["Run", "Device", "Precision", "torch", "Git commit", "Embeddings",
                                             "sha256"], rows)]
    for key, what in (("git_commit", "code versions"), ("precision", "precisions"), ("device_name", "devices")):
        if len({run.provenance.get(key) for run in runs} - {None, ""}) > 1:
            lines.append(f"\n**Warning:** the runs used different {what}; compare them with care.")
    return lines + [""]


def sample_lines(runs):
    lines = []
    for run in runs:
        for sample in (s for s in run.samples if isinstance(s, dict)):
            text = str(sample.get("text", "")).strip().replace("\n", "\n> ")
            lines += [f"**{run_label(run)}** — prompt: `{str(sample.get('prompt', '')).replace('`', chr(39))}`", "",
                      f"> {text}", ""]
    return ["## Generated text samples", "", *lines] if lines else []


def render(report, command):
    lines = ["# Wikitext-2 language modelling: results", "",
             f"Generated by `{command}` from `{report.log_dir}`: {len(report.runs)} run(s) reported, "
             f"{len(report.left_out)} left out.", ""] + (embeddings_lines(report.runs) if report.runs else [])
    marked = {}
    for run in report.runs:
        marked.setdefault(short_run(run.args), []).append(run_label(run))
    lines += [f"> **{mark} runs**: {short_meaning(mark)} — {'; '.join(labels)}.\n" for mark, labels in marked.items()
              if mark]
    lines += bullet_runs(report)
    if report.rows:
        table, dropped = markdown_table(report.rows)
        lines += group_lines(report) + ["## Results per run", "", table] + ([dropped, ""] if dropped else [])
        lines += [DEFINITIONS] + reference_lines(report) + start_lines(report)
        lines += arm_lines(report.answers.get("course"), [g for g in report.groups if g.arm == "course"],
                           "## Answers (runs at the course's learning rate)")
        if report.answers.get("tuned"):
            lines += arm_lines(report.answers["tuned"], [g for g in report.groups if g.arm == "tuned"],
                               "## Answers at the tuned learning rates")
        lines += optimizer_side_by_side(report.answers) + side_by_side_lines(report.groups, report.tuning)
    lines += search_lines(report.tuning, report.tuning_problem, report.log_dir)
    if report.rows:
        lines += figure_lines(report) + provenance_lines(report.runs) + sample_lines(report.runs)
    return "\n".join(lines).rstrip() + "\n"
