"""The assignment's answers in words, for one arm (course lr or tuned lr) of results.md.

Every ranking says whether the winner is distinguishable at 95% from the others, by the paired
Student-t interval over the seeds both ran (compute.versus); with one seed per configuration it
says that no interval can be computed instead of pretending a ranking is certain.
"""
from utils.models.registry import display_name
from utils.report.fmt import log_stat_text, number_text, ppl_text, ratio_text, stat_text
from utils.report.tables import MEMORY_KEYS, METRICS, memory_text

METHOD = ("Seeds: each configuration's completed seeds are summarised by their mean and a 95% confidence "
          "interval from Student's t with n-1 degrees of freedom. Perplexities are averaged in log space "
          "(the mean of log ppl, i.e. of the loss): the table shows the geometric mean with its interval "
          "[lo, hi] (exp of the interval of mean log ppl). Times and memory are positive too and are summarised "
          "the same way (geometric mean [lo, hi]), so no interval goes below zero. Two configurations are "
          "compared by the paired difference over the seeds both ran "
          "(a ratio of perplexities, the winner's over the other's, or a difference in seconds): they are "
          "*not distinguishable* at 95% when its interval contains no difference. A seed that diverged, "
          "failed, is still running or was not run is listed, never averaged.")
ONE_SEED = ("One seed per configuration: no confidence interval can be computed, so these rankings cannot be "
            "tested at 95%; run more seeds (e.g. 3) to tell close configurations apart.")


def detail(comparison):
    """E.g. "×1.03 [0.97, 1.09], paired over seeds 1, 2, 3"."""
    return f"{ratio_text(comparison)}, paired over seeds {', '.join(map(str, comparison['seeds']))}"


def verdict(comparison):
    """E.g. "not distinguishable at 95% (×1.03 [0.97, 1.09], paired over seeds 1, 2, 3)"."""
    if comparison["distinguishable"] is None:
        return f"cannot be tested ({comparison['why']})"
    word = "distinguishable" if comparison["distinguishable"] else "not distinguishable"
    return f"{word} at 95% ({detail(comparison)})"


def ties_sentence(versus, one_seed, name=lambda g: g.name):
    """Which configurations the winner cannot be told apart from, and which it can."""
    if one_seed or not versus:
        return ONE_SEED if one_seed else "No other completed configuration to compare with."
    ties = [f"{g.label} ({detail(c)})" for g, c in versus if c["distinguishable"] is False]
    untested = [f"{name(g)} ({c['why']})" for g, c in versus if c["distinguishable"] is None]
    apart = [name(g) for g, c in versus if c["distinguishable"]]
    parts = []
    if ties:
        parts.append("**Not distinguishable at 95%** from " + "; ".join(ties) + ".")
    if apart:
        parts.append("Distinguishable at 95% (paired over shared seeds) from " + ", ".join(apart) + ".")
    if untested:
        parts.append("Cannot be tested against " + "; ".join(untested) + ".")
    return " ".join(parts)


def average_table(entries, keys, headings):
    """Rows of averages (compute.averages) named by `keys` (e.g. ("model", "optimizer"))."""
    lines = ["| " + " | ".join(headings) + " | Configurations | Seeds | Mean train time (s) | Mean time/epoch (s) "
             "| Mean best val ppl | Geometric mean best val ppl |", "|" + "---|" * (len(keys) + 6)]
    for e in entries:
        lines.append("| " + " | ".join(str(e[k]) for k in keys) + f" | {', '.join(map(str, e['members']))} "
                     f"| {e['seeds']} | {e['mean_train_time_s']:.1f} | {e['mean_time_per_epoch_s']:.1f} "
                     f"| {ppl_text(e['mean_best_valid_ppl'])} | {ppl_text(e['geomean_best_valid_ppl'])} |")
    return lines if entries else ["No completed runs to average yet."]


def shown_ppl(group):
    """A group's best validation perplexity as the tables show it: equal texts are a tie."""
    return ppl_text(group.stats["best_valid_ppl"]["mean"])


def ranked_text(ranking):
    """E.g. "adamw 2,325 = adam 2,325 < sgd 9,000": values equal as displayed are ties, never an order."""
    text = ""
    for i, g in enumerate(ranking):
        sign = "" if i == 0 else (" = " if shown_ppl(g) == shown_ppl(ranking[i - 1]) else " < ")
        text += f"{sign}{g.what[2]} {log_stat_text(g.stats['best_valid_ppl'])}"
    return text


def tied_with(winner, groups):
    """The other groups whose best validation perplexity reads the same as the winner's."""
    return [g for g in groups if g is not winner and g.n and shown_ppl(g) == shown_ppl(winner)]


def ranking_lines(rankings, one_seed):
    lines = []
    for r in rankings:
        if len(r["ranking"]) == 1:
            g = r["ranking"][0]
            lines.append(f"- **{r['model']}**: only {g.what[2]} has a completed run "
                         f"(best val ppl {log_stat_text(g.stats['best_valid_ppl'])}): nothing to compare yet.")
            continue
        first = r["ranking"][0]
        ties = tied_with(first, r["ranking"])
        best = (f"tie between {' and '.join(g.what[2] for g in [first] + ties)} at {shown_ppl(first)}" if ties
                else f"best {first.what[2]}")
        lines.append(f"- **{r['model']}**: {best} (best val ppl, lower is better: {ranked_text(r['ranking'])}). "
                     + ties_sentence(r["versus"], one_seed, lambda g: f"{g.name} ({g.what[2]})"))
    return lines


def pair_lines(pairs, one_seed):
    lines = []
    for lstm, gpt, c in pairs:
        better = gpt if gpt.stats["best_valid_ppl"]["mean"] < lstm.stats["best_valid_ppl"]["mean"] else lstm
        names = [display_name(g.what[0]) for g in (better, gpt, lstm)]
        test = f"ratio {ratio_text(c)} (one seed each: not testable)" if one_seed else verdict(c)
        lines.append(f"- {lstm.label} {log_stat_text(lstm.stats['best_valid_ppl'])} vs {gpt.label} "
                     f"{log_stat_text(gpt.stats['best_valid_ppl'])}: lower with {names[0]}; "
                     f"{names[1]}/{names[2]} {test}.")
    return lines


def tied_text(groups):
    return "".join(f", tied as shown with {g.label}" for g in groups)


def headline_lines(a):
    f, b = a["fastest"], a["best"]
    key = a["fastest_key"]
    best_epochs = sorted({row["best_epoch"] for row in b.members.values()})
    seconds = lambda g: number_text(g.stats[key]["mean"], "seconds") if g.stats[key] else None  # noqa: E731
    fastest_ties = [g for g, _ in a["fastest_versus"] if seconds(g) == seconds(f)]
    return [
        f"- **Fastest configuration** (by {a['fastest_by']}): {f.label} — "
        f"{stat_text(f.stats[key], 'seconds')} s ({'per epoch' if key == 'time_per_epoch_s' else 'of training'}, "
        f"n={f.n}), {stat_text(f.stats['time_per_epoch_s'], 'seconds')} s per epoch{tied_text(fastest_ties)}. "
        + ties_sentence(a["fastest_versus"], a["one_seed"]),
        f"- **Best generalising configuration** (lowest validation perplexity): {b.label} — "
        f"{log_stat_text(b.stats['best_valid_ppl'])} at epoch {', '.join(map(str, best_epochs))}"
        f"{tied_text(tied_with(b, [g for g, _ in a['best_versus']]))}"
        f" (train ppl {log_stat_text(b.stats['train_ppl_at_best'])}, "
        f"test ppl {log_stat_text(b.stats['test_ppl'])}, n={b.n}). "
        + ties_sentence(a["best_versus"], a["one_seed"]),
    ]


def memory_lines(groups):
    """Memory per configuration; one sentence instead when no run measured any (CPU runs)."""
    values = [r[k] for g in groups for r in g.rows.values() for k in MEMORY_KEYS]
    if all(v is None or v != v for v in values):
        why = "not measured: every run ran on a CPU" if any(v is not None for v in values) else "not logged"
        return [f"GPU memory: {why}."]
    lines = ["| Configuration | " + " | ".join(METRICS[k].heading for k in MEMORY_KEYS) + " |",
             "|---" * (len(MEMORY_KEYS) + 1) + "|"]
    for g in groups:
        cells = [mem(g, k) for k in MEMORY_KEYS]
        lines.append(f"| {g.label} | " + " | ".join(cells) + " |")
    return lines


def mem(group, key):
    stat = group.stats.get(key)
    if stat is None:
        rows = list(group.members.values()) or list(group.rows.values())
        return memory_text(next((r[key] for r in rows if r[key] is not None), None))
    return stat_text(stat, "mb") + " MB"


def arm_lines(a, groups, title):
    """One arm's answers: headline, per optimizer, per architecture, memory."""
    lines = [title, ""]
    if a is None or a["fastest"] is None:
        return lines + ["No completed run yet: the answers need at least one completed run.", ""]
    lines += headline_lines(a) + [
        "", "Per optimizer (one-layer runs, i.e. configurations 1-8, so depth does not bias AdamW):", "",
        *ranking_lines(a["optimizer_rankings"], a["one_seed"]), "",
        "Per optimizer within each model (LSTM and MiniGPT1 are never pooled into one average):", "",
        *average_table(a["per_optimizer"], ("model", "optimizer"), ("Model", "Optimizer")), "",
        "Per architecture (LSTM vs MiniGPT1 at the same depth and optimizer):", "",
        *(pair_lines(a["architecture_pairs"], a["one_seed"])
          or ["- No depth and optimizer has both models completed yet."]), "",
        "Per architecture, pooled over every completed configuration of the model (all optimizers and depths):", "",
        *average_table(a["per_architecture"], ("model",), ("Architecture",)), "",
        "Memory per configuration:", "", *memory_lines(groups), "",
    ]
    return lines

