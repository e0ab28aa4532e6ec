"""The learning-rate search (<log_dir>/tuning/tuning.json) and the course-vs-tuned comparison.

The search trains each (model, optimizer) briefly at every lr of a grid and keeps the lr with the
lowest validation perplexity; runs made at that lr carry args lr_from. Here: the budget, the grid,
every grid point's result and the choice; then each configuration at the course's lr beside the
same configuration at its tuned lr, with what changed and whether the change is distinguishable.
"""
import math
import os

from utils.models.registry import MODELS, display_name
from utils.report.answers_md import verdict
from utils.report.describe import COURSE, TUNED
from utils.report.fmt import log_stat_text, lr_text, ppl_text
from utils.report.stats import paired_difference
from utils.runs import schema

BUDGET_WORDS = (("epochs", "epoch(s)"), ("max_batches", "batches per epoch"), ("batch_size", "sequences per batch"),
                ("seed", "seed"))


def budget_text(budget):
    parts = [f"{what} {budget[k]}" if k == "seed" else f"{budget[k]} {what}"
             for k, what in BUDGET_WORDS if isinstance(budget, dict) and budget.get(k) is not None]
    return ", ".join(parts) or "not recorded"


def as_number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def chosen_lr(record, model, optimizer):
    return as_number((record.get("choice") or {}).get(f"{model}/{optimizer}"))


def result_rows(record):
    """The grid points' table rows, grouped by model and optimizer, chosen lr marked."""
    lines = ["| Model | Optimizer | lr | Status | Best val ppl | Chosen |", "|---|---|---|---|---|---|"]
    results = [r for r in record.get("results") or [] if isinstance(r, dict)]
    # Models in the registry's order, optimizers in the grids' order, learning rates ascending.
    models, grids = list(MODELS), list(record.get("grids") or {})
    results.sort(key=lambda r: (models.index(r.get("model")) if r.get("model") in models else len(models),
                                grids.index(r.get("optimizer")) if r.get("optimizer") in grids else len(grids),
                                str(r.get("optimizer")), as_number(r.get("lr")) or 0.0))
    for r in results:
        lr, ppl = as_number(r.get("lr")), as_number(r.get("best_valid_ppl"))
        chosen = lr is not None and lr == chosen_lr(record, r.get("model"), r.get("optimizer"))
        lines.append(f"| {display_name(r.get('model'))} | {r.get('optimizer')} | {lr_text(lr)} "
                     f"| {r.get('status', '?')} | {ppl_text(ppl)} | {'**yes**' if chosen else ''} |")
    return lines if results else ["The record lists no grid point."]


def search_lines(record, problem, log_dir):
    """The '## Learning-rate search' section; [] when there was no search."""
    if record is None and problem is None:
        return []
    folder = os.path.join(log_dir, schema.TUNING_DIR)
    where = f"`{os.path.join(folder, schema.TUNING_RECORD)}`"
    lines = ["## Learning-rate search", ""]
    if problem:
        return lines + [f"{where} could not be used: {problem}.", ""]
    grids = record.get("grids") or {}
    lines += [
        f"From {where}. Each (model, optimizer) was trained at every learning rate of its grid on a short "
        f"budget ({budget_text(record.get('budget'))}) and the lr with the lowest "
        f"{record.get('metric', 'best_valid_ppl')} was chosen. These short runs (`{folder}/`) "
        "are the search's, not the study's: they appear nowhere else in this report.", "",
        "Grids: " + ("; ".join(f"{opt}: {', '.join(lr_text(as_number(x)) for x in lrs)}" for opt, lrs in grids.items())
                     or "not recorded") + ".", "",
        *result_rows(record), "",
        "Choice: " + ("; ".join(f"{key}: lr {lr_text(as_number(lr))}"
                                for key, lr in (record.get("choice") or {}).items()) or "none recorded") + ".", "",
    ]
    return lines


def arm_pairs(groups):
    """[(course group, tuned group)] of the configurations run in both arms."""
    course = {(g.config, g.what): g for g in groups if g.arm == COURSE}
    return [(course[(g.config, g.what)], g) for g in groups if g.arm == TUNED and (g.config, g.what) in course]


def changed_sentence(course, tuned):
    """E.g. "3 (LSTM x1, sgd): course lr 1e-3 -> tuned lr 0.3, best val ppl 2,170 -> 310 (...)"."""
    c, t = course.stats["best_valid_ppl"], tuned.stats["best_valid_ppl"]
    before = ppl_text(c["mean"]) if c else "—"
    after = ppl_text(t["mean"]) if t else "—"
    comparison = paired_difference(tuned.values("best_valid_ppl"), course.values("best_valid_ppl"), log=True)
    change = f"; tuned/course {verdict(comparison)}" if course.n and tuned.n else ""
    name = f"{course.name} ({display_name(course.what[0])} x{course.what[1]}, {course.what[2]})"
    if tuned.reference.args.get("reused_from"):  # utils.study.sweep.REUSED_FROM
        return (f"- {name}: the search chose the course's lr {lr_text(course.reference.args.get('lr'))}: the tuned "
                "arm is the course's runs, reused (same settings, not run again).")
    return (f"- {name}: course lr {lr_text(course.reference.args.get('lr'))} -> tuned lr "
            f"{lr_text(tuned.reference.args.get('lr'))}, best val ppl {before} -> {after}{change}.")


def side_by_side_lines(groups, record):
    """Course vs tuned per configuration: a table, then what changed, then lr mismatches."""
    pairs = arm_pairs(groups)
    if not pairs:
        return []
    lines = ["## Course learning rate vs tuned learning rate", "",
             "Each configuration at the course's lr beside the same configuration at the lr the search chose "
             "(geometric mean over completed seeds [95% interval]).", "",
             "| Config | Course lr | Course best val ppl | Course test ppl | Tuned lr | Tuned best val ppl "
             "| Tuned test ppl | Seeds (course / tuned) |", "|---|---|---|---|---|---|---|---|"]
    for c, t in pairs:
        lines.append(f"| {c.label} | {lr_text(c.reference.args.get('lr'))} "
                     f"| {log_stat_text(c.stats['best_valid_ppl'])} "
                     f"| {log_stat_text(c.stats['test_ppl'])} | {lr_text(t.reference.args.get('lr'))} "
                     f"| {log_stat_text(t.stats['best_valid_ppl'])} | {log_stat_text(t.stats['test_ppl'])} "
                     f"| {c.n} / {t.n} |")
    lines += ["", "What changed:", "", *[changed_sentence(c, t) for c, t in pairs], ""]
    return lines + mismatch_lines([t for _, t in pairs], record)


def mismatch_lines(tuned_groups, record):
    """A tuned run whose lr is not the record's choice was tuned elsewhere (another record)."""
    if not record:
        return []
    lines = []
    for g in tuned_groups:
        chosen, lr = chosen_lr(record, *g.what[::2]), as_number(g.reference.args.get("lr"))
        if chosen is not None and lr is not None and not math.isclose(chosen, lr):
            lines.append(f"**Note:** {g.label} ran at lr {lr_text(lr)} but this search chose {lr_text(chosen)} "
                         f"(its lr came from {g.reference.args.get('lr_from')}).")
    return lines + [""] if lines else []


def optimizer_side_by_side(answers):
    """Per model and optimizer (one layer), the course arm's and the tuned arm's best val ppl, and
    each arm's best optimizer: the per-optimizer answer for both arms."""
    arms = {arm: a for arm, a in answers.items() if a and a["optimizer_rankings"]}
    if TUNED not in arms:
        return []
    lines = ["### Per optimizer, both arms", "",
             "| Model | Optimizer | Course lr: best val ppl | Tuned lr: best val ppl |", "|---|---|---|---|"]
    cells = {}
    for arm, a in arms.items():
        for r in a["optimizer_rankings"]:
            for g in r["ranking"]:
                cells[(r["model"], g.what[2], arm)] = log_stat_text(g.stats["best_valid_ppl"]) + (
                    f" (lr {lr_text(g.reference.args.get('lr'))})" if arm == TUNED else "")
    for model, optimizer in dict.fromkeys((m, o) for m, o, _ in cells):
        lines.append(f"| {model} | {optimizer} | {cells.get((model, optimizer, COURSE), '—')} "
                     f"| {cells.get((model, optimizer, TUNED), '—')} |")
    lines.append("")
    for arm, a in arms.items():
        best = "; ".join(f"{r['model']}: {r['ranking'][0].what[2]}" for r in a["optimizer_rankings"])
        lines.append(f"- Best optimizer at the {arm} lr: {best}.")
    return lines + [""]
