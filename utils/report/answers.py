"""results.md's answers in words, per arm (course or tuned lr), each ranking with whether the winner is
distinguishable at 95% (paired over shared seeds); then the learning-rate search and course vs tuned."""
import math
import os

from utils.models.registry import MODELS, display_name
from utils.report.compute import paired_difference
from utils.report.fmt import COURSE, TUNED, config_text, finite, lr_text, number_text, ppl_text, ratio_text, stat_text
from utils.report.read import as_float
from utils.report.tables import MEMORY_KEYS, METRICS, md_table, missing_memory
from utils.runs import schema

METHOD = ("Seeds: each configuration's completed seeds give a geometric mean and a 95% interval [lo, hi] from "
          "Student's t with n-1 degrees of freedom on the logs (of perplexity, i.e. the loss, of seconds and "
          "of memory, so no bound goes below zero). Two configurations are compared by the paired ratio (or "
          "difference in seconds) over the seeds both ran: *not distinguishable* at 95% when its interval "
          "holds no difference. A seed that diverged, failed, is still running or was not run is listed, never "
          "averaged.")
ONE_SEED = ("One seed per configuration: no confidence interval can be computed, so these rankings cannot be "
            "tested at 95%; run more seeds (e.g. 3) to tell close configurations apart.")
BUDGET_WORDS = (("epochs", "epoch(s)"), ("max_batches", "batches per split per epoch"),
                ("batch_size", "sequences per batch"), ("seed", "seed"))


def detail(c):  # e.g. "×1.03 [0.97, 1.09], paired over seeds 1, 2, 3"
    return f"{ratio_text(c)}, paired over seeds {', '.join(map(str, c['seeds']))}"


def verdict(c):
    if c["distinguishable"] is None:
        return f"cannot be tested ({c['why']})"
    return f"{'distinguishable' if c['distinguishable'] else 'not distinguishable'} at 95% ({detail(c)})"


def ties_sentence(versus, one_seed, name=lambda g: g.name):
    if one_seed or not versus:
        return ONE_SEED if one_seed else "No other completed configuration to compare with."
    ties = [f"{g.label} ({detail(c)})" for g, c in versus if c["distinguishable"] is False]
    apart = [name(g) for g, c in versus if c["distinguishable"]]
    untested = [f"{name(g)} ({c['why']})" for g, c in versus if c["distinguishable"] is None]
    return " ".join(([f"**Not distinguishable at 95%** from {'; '.join(ties)}."] if ties else []) +
                    ([f"Distinguishable at 95% (paired over shared seeds) from {', '.join(apart)}."] if apart else []) +
                    ([f"Cannot be tested against {'; '.join(untested)}."] if untested else []))


def average_table(entries, keys, headings):
    if not entries:
        return ["No completed runs to average yet."]
    return md_table([*headings, "Configurations", "Seeds", "Mean train time (s)", "Mean time/epoch (s)",
                     "Mean best val ppl", "Geometric mean best val ppl"],
                    [[*(e[k] for k in keys), ", ".join(map(str, e["members"])), e["seeds"],
                      f"{e['mean_train_time_s']:.1f}", f"{e['mean_time_per_epoch_s']:.1f}",
                      ppl_text(e["mean_best_valid_ppl"]), ppl_text(e["geomean_best_valid_ppl"])] for e in entries])


def shown_ppl(group):  # equal as displayed: a tie, never an order
    return ppl_text(group.stats["best_valid_ppl"]["mean"])


def tied_with(winner, groups):
    return [g for g in groups if g is not winner and g.n and shown_ppl(g) == shown_ppl(winner)]


def ranking_lines(rankings, one_seed):
    lines = []
    for r in rankings:
        first, ranked = r["ranking"][0], r["ranking"]
        if len(ranked) == 1:
            lines.append(f"- **{r['model']}**: only {first.what[2]} has a completed run "
                         f"(best val ppl {stat_text(first.stats['best_valid_ppl'])}): nothing to compare yet.")
            continue
        order = "".join(("" if i == 0 else " = " if shown_ppl(g) == shown_ppl(ranked[i - 1]) else " < ") +
                        f"{g.what[2]} {stat_text(g.stats['best_valid_ppl'])}" for i, g in enumerate(ranked))
        ties = tied_with(first, ranked)
        best = f"tie between {' and '.join(g.what[2] for g in [first] + ties)} at {shown_ppl(first)}" if ties \
            else f"best {first.what[2]}"
        lines.append(f"- **{r['model']}**: {best} (best val ppl, lower is better: {order}). "
                     + ties_sentence(r["versus"], one_seed, lambda g: f"{g.name} ({g.what[2]})"))
    return lines


def headline_lines(a):
    f, b, key = a["fastest"], a["best"], a["fastest_key"]
    seconds = lambda g: number_text(g.stats[key]["mean"], "seconds") if g.stats[key] else None  # noqa: E731
    tied_text = lambda groups: "".join(f", tied as shown with {g.label}" for g in groups)  # noqa: E731
    epochs = ", ".join(map(str, sorted({row["best_epoch"] for row in b.members.values()})))
    return [
        f"- **Fastest configuration** (by {a['fastest_by']}): {f.label} — {stat_text(f.stats[key], 'seconds')} s "
        f"({'per epoch' if key == 'time_per_epoch_s' else 'of training'}, n={f.n}), "
        f"{stat_text(f.stats['time_per_epoch_s'], 'seconds')} s per epoch"
        f"{tied_text([g for g, _ in a['fastest_versus'] if seconds(g) == seconds(f)])}. "
        + ties_sentence(a["fastest_versus"], a["one_seed"]),
        f"- **Best generalising configuration** (lowest validation perplexity): {b.label} — "
        f"{stat_text(b.stats['best_valid_ppl'])} at epoch {epochs}"
        f"{tied_text(tied_with(b, [g for g, _ in a['best_versus']]))} (train ppl "
        f"{stat_text(b.stats['train_ppl_at_best'])}, final test ppl {stat_text(b.stats['test_ppl'])}, n={b.n}). "
        + ties_sentence(a["best_versus"], a["one_seed"]),
    ]


def memory_lines(groups):
    values = [r[k] for g in groups for r in g.rows.values() for k in MEMORY_KEYS]
    if all(v is None or v != v for v in values):
        measured = any(v is not None for v in values)
        return [f"GPU memory: {'not measured: every run ran on a CPU' if measured else 'not logged'}."]
    return md_table(["Configuration"] + [METRICS[k].heading for k in MEMORY_KEYS], [
        [g.label] + [stat_text(g.stats[k], "mb") + " MB" if g.stats.get(k) else missing_memory(g, k)
                     for k in MEMORY_KEYS] for g in groups])


def arm_lines(a, groups, title):
    """One arm's answers: headline, per optimizer, per architecture, memory."""
    if a is None or a["fastest"] is None:
        return [title, "", "No completed run yet: the answers need at least one completed run.", ""]
    return [title, "", *headline_lines(a), "",
            "Per optimizer (one-layer runs, i.e. configurations 1-8, so depth does not bias AdamW):", "",
            *ranking_lines(a["optimizer_rankings"], a["one_seed"]), "",
            "Per optimizer within each model (LSTM and MiniGPT1 are never pooled into one average):", "",
            *average_table(a["per_optimizer"], ("model", "optimizer"), ("Model", "Optimizer")), "",
            "Per architecture, pooled over every completed configuration of the model (all optimizers and depths; "
            "Seeds counts distinct seeds):", "",
            *average_table(a["per_architecture"], ("model",), ("Architecture",)), "",
            "Memory per configuration:", "", *memory_lines(groups), ""]


def as_number(value):  # tuning.json is read as written: None where it holds no number
    return as_float(value) if finite(as_float(value)) else None


def chosen_lr(record, model, optimizer):
    return as_number((record.get("choice") or {}).get(f"{model}/{optimizer}"))


def search_lines(record, problem, log_dir):
    """The '## Learning-rate search' section (budget, grids, every grid point, the choice); [] without one."""
    if record is None and problem is None:
        return []
    folder = os.path.join(log_dir, schema.TUNING_DIR)
    where = f"`{os.path.join(folder, schema.TUNING_RECORD)}`"
    if problem:
        return ["## Learning-rate search", "", f"{where} could not be used: {problem}.", ""]
    budget = record.get("budget") if isinstance(record.get("budget"), dict) else {}
    budget = ", ".join(f"{what} {budget[k]}" if k == "seed" else f"{budget[k]} {what}"
                       for k, what in BUDGET_WORDS if budget.get(k) is not None) or "not recorded"
    grids, models = record.get("grids") or {}, list(MODELS)
    results = sorted((r for r in record.get("results") or [] if isinstance(r, dict)), key=lambda r: (
        models.index(r.get("model")) if r.get("model") in models else len(models),
        list(grids).index(r.get("optimizer")) if r.get("optimizer") in grids else len(grids),
        str(r.get("optimizer")), as_number(r.get("lr")) or 0.0))
    rows = md_table(["Model", "Optimizer", "lr", "Status", "Best val ppl", "Chosen"], [
        [display_name(r.get("model")), r.get("optimizer"), lr_text(as_number(r.get("lr"))), r.get("status", "?"),
         ppl_text(as_number(r.get("best_valid_ppl"))),
         "**yes**" if as_number(r.get("lr")) == chosen_lr(record, r.get("model"), r.get("optimizer")) else ""]
        for r in results])
    return ["## Learning-rate search", "",
            f"From {where}. Each (model, optimizer) was trained at every learning rate of its grid on a short budget "
            f"({budget}) and the lr with the lowest {record.get('metric', 'best_valid_ppl')} was chosen. These short "
            f"runs (`{folder}/`) are the search's, not the study's: they appear nowhere else in this report.", "",
            "Grids: " + ("; ".join(f"{opt}: {', '.join(lr_text(as_number(x)) for x in lrs)}"
                                   for opt, lrs in grids.items()) or "not recorded") + ".", "",
            *(rows if results else ["The record lists no grid point."]), "",
            "Choice: " + ("; ".join(f"{key}: lr {lr_text(as_number(lr))}"
                                    for key, lr in (record.get("choice") or {}).items()) or "none recorded") + ".", ""]


def changed_sentence(course, tuned):
    name = f"{course.name} ({config_text(course.reference.args)})"
    course_lr = lr_text(course.reference.args.get("lr"))
    if tuned.reference.args.get("reused_from"):  # utils.study.sweep.REUSED_FROM
        return (f"- {name}: the search chose the course's lr {course_lr}: the tuned arm is the course's runs, "
                "reused (same settings, not run again).")
    before, after = (ppl_text((g.stats["best_valid_ppl"] or {}).get("mean")) for g in (course, tuned))
    comparison = paired_difference(tuned.values("best_valid_ppl"), course.values("best_valid_ppl"), log=True)
    change = f"; tuned/course {verdict(comparison)}" if course.n and tuned.n else ""
    return (f"- {name}: course lr {course_lr} -> tuned lr {lr_text(tuned.reference.args.get('lr'))}, "
            f"best val ppl {before} -> {after}{change}.")


def side_by_side_lines(groups, record):
    """Course vs tuned per configuration: a table, what changed, and tuned lrs other than the record's."""
    course = {(g.config, g.what): g for g in groups if g.arm == COURSE}
    pairs = [(course[(g.config, g.what)], g) for g in groups if g.arm == TUNED and (g.config, g.what) in course]
    if not pairs:
        return []
    lines = ["## Course learning rate vs tuned learning rate", "",
             "Each configuration at the course's lr beside the same configuration at the lr the search chose "
             "(geometric mean over completed seeds [95% interval]).", "",
             *md_table(["Config", "Course lr", "Course best val ppl", "Course test ppl", "Tuned lr",
                        "Tuned best val ppl", "Tuned test ppl", "Seeds (course / tuned)"],
                       [[c.label, lr_text(c.reference.args.get("lr")), stat_text(c.stats["best_valid_ppl"]),
                         stat_text(c.stats["test_ppl"]), lr_text(t.reference.args.get("lr")),
                         stat_text(t.stats["best_valid_ppl"]), stat_text(t.stats["test_ppl"]), f"{c.n} / {t.n}"]
                        for c, t in pairs])]
    lines += ["", "What changed:", "", *[changed_sentence(c, t) for c, t in pairs], ""]
    for _, g in pairs if record else []:
        chosen, lr = chosen_lr(record, *g.what[::2]), as_number(g.reference.args.get("lr"))
        if chosen is not None and lr is not None and not math.isclose(chosen, lr):
            lines += [f"**Note:** {g.label} ran at lr {lr_text(lr)} but this search chose {lr_text(chosen)} "
                      f"(its lr came from {g.reference.args.get('lr_from')}).", ""]
    return lines


def optimizer_side_by_side(answers):
    """Per model and optimizer (one layer), both arms' best val ppl and each arm's best optimizer."""
    arms = {arm: a for arm, a in answers.items() if a and a["optimizer_rankings"]}
    if TUNED not in arms:
        return []
    cells = {(r["model"], g.what[2], arm): stat_text(g.stats["best_valid_ppl"]) + (
        f" (lr {lr_text(g.reference.args.get('lr'))})" if arm == TUNED else "")
        for arm, a in arms.items() for r in a["optimizer_rankings"] for g in r["ranking"]}
    lines = ["### Per optimizer, both arms", "", *md_table(
        ["Model", "Optimizer", "Course lr: best val ppl", "Tuned lr: best val ppl"],
        [[m, o, cells.get((m, o, COURSE), "—"), cells.get((m, o, TUNED), "—")]
         for m, o in dict.fromkeys((m, o) for m, o, _ in cells)])]
    lines += [""] + [f"- Best optimizer at the {arm} lr: "
                     + "; ".join(f"{r['model']}: {r['ranking'][0].what[2]}" for r in a["optimizer_rankings"]) + "."
                     for arm, a in arms.items()]
    return lines + [""]
