"""Figures on matplotlib's Agg canvas (no pyplot: no display needed, a notebook's backend untouched):
the notebook's figure per run and, per comparison group, validation perplexity over seeds."""
import math
from itertools import accumulate
from statistics import mean

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from utils.report.compute import best_epoch, shown_run, start_problem
from utils.report.fmt import (device_text, embeddings_text, finite, is_smoke, ppl_text, run_arm, run_label, run_seed,
                              settings_text, short_meaning, short_run, smoke_text)
from utils.report.read import as_float
from utils.runs import schema

GROUP_TITLES = {"lstm_optimizers": "LSTM (1 layer): optimizers compared",
                "gpt1_optimizers": "MiniGPT1 (1 layer): optimizers compared",
                "lstm_layers": "LSTM with AdamW: 1, 2 and 4 layers",
                "gpt1_layers": "MiniGPT1 with AdamW: 1, 2 and 4 layers"}
DPI = 120
EPOCH1_SHORT = ("MiniGPT1's epoch 1 starts far above uniform (52-64 nats/token with ppmi-svd, 44-48 with GPT-1's "
                "under --init course): ignore it")


def time_unit(max_seconds):
    return (3600.0, "h") if max_seconds >= 2 * 3600 else (60.0, "min") if max_seconds >= 600 else (1.0, "s")


def spans_decade(values):
    values = [v for v in values if finite(v) and v > 0]
    return bool(values) and max(values) / min(values) > 10


def clean(values):
    return [v if finite(v) else math.nan for v in values]  # NaN: a gap where a run diverged


def cumulative_train_seconds(epochs):
    return list(accumulate(e["train_seconds"] if finite(e.get("train_seconds")) else 0.0 for e in epochs))


def new_figure(width, height):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def style_axis(ax, title, xlabel, ylabel, log_values=None):
    """A log y axis when log_values (every panel of the quantity) span a decade: 100, 200, 500... if moderate."""
    ax.set_title(title, fontsize=12)
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    values = [v for v in log_values or () if finite(v) and v > 0]
    if spans_decade(values):
        ax.set_yscale("log")
        ax.set_ylabel(ylabel + " (log scale)", fontsize=11)
        if max(values) / min(values) <= 1e3 and 1 <= min(values) and max(values) < 1e6:
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, alpha=0.3, which="both")


def integer_epochs(ax, epochs):
    ax.set_xticks(epochs if len(epochs) <= 12 else epochs[:: math.ceil(len(epochs) / 12)])


def epoch1_note(runs):
    """[EPOCH1_SHORT] when one of `runs` started far above uniform (naming --init stable unless all used it)."""
    far = [r for r in runs if (start_problem(r) or ("",))[0] == "far above uniform"]
    return [EPOCH1_SHORT + ("" if all(r.args.get("init") == "stable" for r in far) else ", or use --init stable")
            ] if far else []


def run_caption(run):
    args = run.args
    text = ", ".join([settings_text(args)] + [f"{k}={args[k]}" for k in ("batch_size", "epochs", "max_batches")
                                              if args.get(k) is not None]
                     + [f"seed={run_seed(args)}"] + (["lr tuned by the search"] if run_arm(args) == "tuned" else []))
    best = best_epoch(run.epochs)
    status = run.status + (f": {run.status_message}" if run.status_message else "")
    lines = ([smoke_text(args)] if is_smoke(args) else []) + [
        text, f"{embeddings_text(run)}; {device_text(run) or 'device not recorded'}",
        (f"best val ppl {ppl_text(best['valid_ppl'])} at epoch {best['epoch']}" if best else "no finite val ppl")
        + f"; status: {status[:90]}"]
    return "\n".join(lines + epoch1_note([run]))


def plot_run(run, path):
    """Per schema.PANELS row (loss, ppl) each split's metric vs training time, then every panel vs epoch."""
    epochs, seconds = [e["epoch"] for e in run.epochs], cumulative_train_seconds(run.epochs)
    div, unit = time_unit(max(seconds or [0.0]))
    times = [t / div for t in seconds]
    drawn = [m for m in schema.EPOCH_METRICS if m.panel]
    series = {m.key: clean([as_float(e.get(m.key)) for e in run.epochs]) for m in drawn}
    by_panel = {panel: [m for m in drawn if m.panel == panel] for panel in schema.PANELS}
    scale = {panel: [v for m in ms for v in series[m.key]] for panel, ms in by_panel.items()}
    splits = list(dict.fromkeys(m.split for m in drawn))
    width = max(len(splits), len(by_panel))
    fig = new_figure(6 * width, 4.2 * (len(by_panel) + 1) + 0.8)
    smoke = is_smoke(run.args)  # a red title
    fig.suptitle(run_label(run) + (f" — {smoke_text(run.args).split(':')[0]}" if smoke else ""), fontsize=14,
                 color="firebrick" if smoke else "black")
    fig.supxlabel(run_caption(run), fontsize=9, color="dimgray")
    axs = fig.subplots(len(by_panel) + 1, width, squeeze=False)
    bad = next((i for i in range(len(epochs)) if not all(finite(series[m.key][i]) for m in drawn)), None)
    colours, markers = {s: f"C{3 * i}" for i, s in enumerate(splits)}, {s: "os^D"[i % 4] for i, s in enumerate(splits)}
    for row, (panel, label) in enumerate(schema.PANELS.items()):
        for m in by_panel[panel]:
            ax = axs[row, splits.index(m.split)]
            ax.plot(times, series[m.key], "o-", color=colours[m.split], markersize=4, label=m.heading)
            diverged(ax, times, bad)
            style_axis(ax, f"{m.heading} vs training time", f"Cumulative training time ({unit})", label, scale[panel])
    for col, (panel, label) in enumerate(schema.PANELS.items()):
        ax = axs[-1, col]
        for i, m in enumerate(by_panel[panel]):  # distinct marker, style and size: a hidden series still shows
            ax.plot(epochs, series[m.key], marker=markers[m.split], linestyle=("-", "--", ":")[i % 3],
                    color=colours[m.split], markersize=7 - 2 * i, markerfacecolor="none" if i else colours[m.split],
                    label=m.heading)
        diverged(ax, epochs, bad)
        style_axis(ax, f"{label.split(' (')[0]} per epoch", "Epoch", label, scale[panel])
        integer_epochs(ax, epochs)
    fig.savefig(path, dpi=DPI)
    return fig


def diverged(ax, xs, bad):
    """A dotted line where values stopped being finite, then the legend."""
    if bad is not None:
        ax.axvline(xs[bad], color="k", linestyle=":", linewidth=1.2, label="non-finite (diverged)")
    ax.legend(fontsize=9)


def member_runs(group):
    """The RunRecords behind a group's counted seeds; the run standing for it when none completed."""
    ids = {row["exp_id"] for row in group.members.values()}
    return [r for r in group.runs if r.exp_id in ids] or [run for run in [shown_run(group)] if run.epochs]


def group_curve(group):
    """(runs, curve): per epoch the seeds' geometric mean, min, max val ppl and mean cumulative seconds."""
    runs = member_runs(group)
    if len(runs) == 1:  # as logged, gaps included
        epochs = runs[0].epochs
        return runs, {"epoch": [e["epoch"] for e in epochs], "gmean": clean([e["valid_ppl"] for e in epochs]),
                      "seconds": cumulative_train_seconds(epochs)}
    by_epoch = {}
    for run in runs:
        for e, seconds in zip(run.epochs, cumulative_train_seconds(run.epochs)):
            if finite(e["valid_ppl"]) and e["valid_ppl"] > 0:
                by_epoch.setdefault(e["epoch"], []).append((e["valid_ppl"], seconds))
    curve = {"epoch": sorted(by_epoch)}
    ppl = [[p for p, _ in by_epoch[e]] for e in curve["epoch"]]
    curve.update(gmean=[math.exp(mean(map(math.log, p))) for p in ppl], lo=list(map(min, ppl)), hi=list(map(max, ppl)),
                 seconds=[mean(s for _, s in by_epoch[e]) for e in curve["epoch"]])
    return runs, curve


def same_curve(a, b, rtol=5e-3):
    return bool(a["epoch"]) and a["epoch"] == b["epoch"] and all(
        finite(x) == finite(y) and (not finite(x) or abs(x - y) <= rtol * max(abs(x), abs(y)))
        for x, y in zip(a["gmean"], b["gmean"]))


def coinciding(groups):
    """{group name: [earlier groups whose curve it lies on]}: a reader would otherwise see one line."""
    curves = [(g, group_curve(g)[1]) for g in groups]
    return {g.name: [h.name for h, other in curves[:i] if same_curve(curve, other)]
            for i, (g, curve) in enumerate(curves)}


def group_title(name, groups):
    smoke = any(is_smoke(r.args) for g in groups for r in member_runs(g))
    return ("SMOKE RUNS: " if smoke else "") + GROUP_TITLES.get(name, name)


def group_caption(groups, missing, same=None):
    runs = [r for g in groups for r in member_runs(g)]
    kinds = sorted({embeddings_text(r) for r in runs})
    lines = [f"{m} runs: {short_meaning(m)}." for m in dict.fromkeys(short_run(r.args) for r in runs) if m]
    if missing:
        lines.append(f"Not run yet or left out: configuration{'s' if len(missing) != 1 else ''} "
                     f"{', '.join(map(str, missing))}.")
    lines += [kinds[0] if len(kinds) == 1 else "WARNING: mixed embeddings: " + "; ".join(kinds)] if kinds else []
    if any(len(member_runs(g)) > 1 for g in groups):
        lines.append("line: geometric mean over seeds; band: min-max over seeds")
    if len({g.arm for g in groups}) > 1:
        lines.append("solid: the course's lr; dashed: the lr tuned by the search")
    lines += [f"{name} coincides with {', '.join(under)} (drawn over it: hollow markers, dotted line)."
              for name, under in (same or {}).items() if under]
    return "\n".join(lines + epoch1_note(runs))


def plot_group(name, groups, missing, path):
    """Validation ppl vs epoch and vs training time of a group's SeedGroups; missing: configurations not shown."""
    fig, same, title = new_figure(13, 7.5), coinciding(groups), group_title(name, groups)
    fig.suptitle(title, fontsize=14, color="firebrick" if title.startswith("SMOKE") else "black")
    ax_epoch, ax_time = fig.subplots(1, 2)
    div, unit = time_unit(max([max(cumulative_train_seconds(r.epochs) or [0.0]) for g in groups
                               for r in member_runs(g)] or [0.0]))
    configs, values, all_epochs = list(dict.fromkeys(g.config for g in groups)), [], set()
    for group in groups:
        i, under = configs.index(group.config), same.get(group.name)
        label = group.label + (f" (n={group.n}" + (f" of {group.n_of}" if group.absent else "") + ")"
                               if group.n > 1 or group.absent else "") + (
            f" ({shown_run(group).status})" if not group.n else "") + (f" (= {', '.join(under)})" if under else "")
        style = dict(color=f"C{i % 10}", marker="os^Dv<>ph*"[i % 10], markersize=5,
                     linestyle="-" if group.arm == "course" else "--", label=label)
        if under:  # over an identical curve: hollow, larger markers and a dotted line let both show
            style.update(linestyle=":", markersize=9, markerfacecolor="none", markeredgewidth=1.6)
        runs, curve = group_curve(group)
        if not runs:
            continue
        times = [s / div for s in curve["seconds"]]
        for ax, xs in ((ax_epoch, curve["epoch"]), (ax_time, times)):
            ax.plot(xs, curve["gmean"], **style)
            if len(runs) > 1:
                ax.fill_between(xs, curve["lo"], curve["hi"], color=style["color"], alpha=0.18, linewidth=0)
        values += curve["gmean"] + (curve["lo"] + curve["hi"] if len(runs) > 1 else [])
        all_epochs.update(e["epoch"] for r in runs for e in r.epochs)
    style_axis(ax_epoch, "Validation perplexity per epoch", "Epoch", "Validation perplexity", values)
    style_axis(ax_time, "Validation perplexity vs training time", f"Cumulative training time ({unit})",
               "Validation perplexity", values)
    integer_epochs(ax_epoch, sorted(all_epochs))
    handles, labels = ax_epoch.get_legend_handles_labels()  # one legend under both panels: it hides no curve
    legend = fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), fontsize=10,
                        title=group_caption(groups, missing, same), title_fontsize=9, frameon=False)
    legend.get_title().set_color("dimgray")
    fig.savefig(path, dpi=DPI)
    return fig
