"""compare_<group>.png: validation perplexity of a comparison group's configurations, over seeds.

Each configuration is one line, the geometric mean of its completed seeds per epoch, with a band
from the lowest to the highest seed (min-max: with 2-3 seeds a t interval would mostly show the t
quantile). A configuration with no completed seed is drawn from its one run, labelled with its
status. Course-lr runs are solid, tuned-lr runs dashed in the same colour, so each pair reads as
"what tuning changed".
"""
import math
from statistics import mean

from utils.report.aggregate import shown_run
from utils.report.describe import astronomical_start, embeddings_text, is_smoke
from utils.report.fmt import finite
from utils.report.plots import (DPI, EPOCH1_SHORT, GROUP_TITLES, clean, cumulative_train_seconds, integer_epochs,
                                new_figure, style_axis, time_unit, titles)


def seed_curve(runs):
    """{epoch, gmean, lo, hi, seconds} per epoch over the runs that logged it with a finite positive
    validation perplexity: geometric mean, min, max, and mean cumulative training seconds."""
    by_epoch = {}
    for run in runs:
        for e, seconds in zip(run.epochs, cumulative_train_seconds(run.epochs)):
            if finite(e["valid_ppl"]) and e["valid_ppl"] > 0:
                by_epoch.setdefault(e["epoch"], []).append((e["valid_ppl"], seconds))
    curve = {"epoch": [], "gmean": [], "lo": [], "hi": [], "seconds": []}
    for epoch in sorted(by_epoch):
        ppl = [p for p, _ in by_epoch[epoch]]
        for key, value in (("epoch", epoch), ("gmean", math.exp(mean(math.log(p) for p in ppl))), ("lo", min(ppl)),
                           ("hi", max(ppl)), ("seconds", mean(s for _, s in by_epoch[epoch]))):
            curve[key].append(value)
    return curve


def member_runs(group):
    """The RunRecords behind a group's counted seeds; the run standing for it when none completed."""
    ids = {row["exp_id"] for row in group.members.values()}
    runs = [r for r in group.runs if r.exp_id in ids]
    return runs or [run for run in [shown_run(group)] if run.epochs]


def legend_label(group):
    label = group.label
    if group.n > 1 or group.absent:
        label += f" (n={group.n}" + (f" of {group.n_of}" if group.absent else "") + ")"
    if not group.n:
        label += f" ({shown_run(group).status})"
    return label


def group_curve(group):
    """(runs, curve) of a group: the geometric mean over its seeds, or its one run as logged."""
    runs = member_runs(group)
    if len(runs) == 1:  # one run: plot it as logged, gaps (non-finite values) included
        run = runs[0]
        return runs, {"epoch": [e["epoch"] for e in run.epochs], "gmean": clean([e["valid_ppl"] for e in run.epochs]),
                      "seconds": cumulative_train_seconds(run.epochs)}
    return runs, seed_curve(runs)


def same_curve(a, b, rtol=5e-3):
    """True when two curves cover the same epochs with values within rtol: drawn on top of each other."""
    if a["epoch"] != b["epoch"] or not a["epoch"]:
        return False
    pairs = list(zip(a["gmean"], b["gmean"]))
    return all(finite(x) == finite(y) and (not finite(x) or abs(x - y) <= rtol * max(abs(x), abs(y)))
               for x, y in pairs)


def coinciding(groups):
    """{group name: [names of earlier groups whose curve it lies on]}; a reader sees one line otherwise."""
    curves = [(g, group_curve(g)[1]) for g in groups]
    return {g.name: [h.name for h, other in curves[:i] if same_curve(curve, other)]
            for i, (g, curve) in enumerate(curves)}


def draw(ax_epoch, ax_time, group, style, div):
    runs, curve = group_curve(group)
    if not runs:
        return []
    times = [s / div for s in curve["seconds"]]
    ax_epoch.plot(curve["epoch"], curve["gmean"], **style)
    ax_time.plot(times, curve["gmean"], **style)
    if len(runs) > 1:
        colour = style["color"]
        ax_epoch.fill_between(curve["epoch"], curve["lo"], curve["hi"], color=colour, alpha=0.18, linewidth=0)
        ax_time.fill_between(times, curve["lo"], curve["hi"], color=colour, alpha=0.18, linewidth=0)
        return curve["gmean"] + curve["lo"] + curve["hi"]
    return curve["gmean"]


def plural(word, items):
    return word + ("s" if len(items) != 1 else "")


def group_title(name, groups):
    """One line: what the group compares (SMOKE RUNS first when the budget was tiny)."""
    runs = [r for g in groups for r in member_runs(g)]
    title = GROUP_TITLES.get(name, name)
    return ("SMOKE RUNS: " + title) if any(is_smoke(r.args) for r in runs) else title


def group_caption(groups, missing, same=None):
    """The small text under a comparison figure: what is missing, embeddings, how lines read."""
    runs = [r for g in groups for r in member_runs(g)]
    lines = []
    if any(is_smoke(r.args) for r in runs):
        lines.append("Smoke runs (tiny budget): the numbers only show that the pipeline works.")
    if missing:
        lines.append(f"Not run yet or left out: {plural('configuration', missing)} {', '.join(map(str, missing))}.")
    kinds = sorted({embeddings_text(r) for r in runs})
    if kinds:
        lines.append(kinds[0] if len(kinds) == 1 else "WARNING: mixed embeddings: " + "; ".join(kinds))
    if any(len(member_runs(g)) > 1 for g in groups):
        lines.append("line: geometric mean over seeds; band: min-max over seeds")
    if len({g.arm for g in groups}) > 1:
        lines.append("solid: the course's lr; dashed: the lr tuned by the search")
    for name, under in (same or {}).items():
        if under:
            lines.append(f"{name} coincides with {', '.join(under)} (drawn over it: hollow markers, dotted line).")
    if any(astronomical_start(r, ("valid_loss",)) for r in runs):
        lines.append(EPOCH1_SHORT)
    return "\n".join(lines)


def plot_group(name, groups, missing, path):
    """Validation perplexity vs epoch and vs training time for one comparison group's SeedGroups
    (course and tuned arms); missing: configuration numbers of the group with no run to show."""
    fig = new_figure(13, 7.5)
    same = coinciding(groups)
    smoke = any(is_smoke(r.args) for g in groups for r in member_runs(g))
    titles(fig, group_title(name, groups), None, smoke)
    ax_epoch, ax_time = fig.subplots(1, 2)
    longest = max([max(cumulative_train_seconds(r.epochs) or [0.0]) for g in groups for r in member_runs(g)] or [0.0])
    div, unit = time_unit(longest)
    configs = list(dict.fromkeys(g.config for g in groups))
    values, all_epochs = [], set()
    for group in groups:
        i = configs.index(group.config)
        under = same.get(group.name)
        style = dict(color=f"C{i % 10}", marker="os^Dv<>ph*"[i % 10], markersize=5,
                     linestyle="-" if group.arm == "course" else "--",
                     label=legend_label(group) + (f" (= {', '.join(under)})" if under else ""))
        if under:  # drawn over an identical curve: hollow, larger markers and a dotted line let both show
            style.update(linestyle=":", markersize=9, markerfacecolor="none", markeredgewidth=1.6)
        values += draw(ax_epoch, ax_time, group, style, div)
        all_epochs.update(e["epoch"] for r in member_runs(group) for e in r.epochs)
    style_axis(ax_epoch, "Validation perplexity per epoch", "Epoch", "Validation perplexity", values)
    style_axis(ax_time, "Validation perplexity vs training time", f"Cumulative training time ({unit})",
               "Validation perplexity", values)
    integer_epochs(ax_epoch, sorted(all_epochs))
    # One legend under both panels (it can never hide a curve), headed by the details in small text.
    handles, labels = ax_epoch.get_legend_handles_labels()
    legend = fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), fontsize=10,
                        title=group_caption(groups, missing, same), title_fontsize=9, frameon=False)
    legend.get_title().set_color("dimgray")
    fig.savefig(path, dpi=DPI)
    return fig
