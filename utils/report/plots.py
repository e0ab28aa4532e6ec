"""Figures of the report: the notebook's 3x2 figure per run and the group comparisons over seeds.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so the report neither needs a
display nor changes the backend of a notebook that imports it. Panels that show the same quantity
(perplexity) make one log-or-linear decision together, so a train and a valid panel never differ
in scale. Smoke runs say so in the title; every figure names the embeddings its numbers rest on.
"""
import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from utils.report.compute import best_epoch
from utils.report.describe import (astronomical_start, device_text, embeddings_text, is_smoke,
                                   run_arm, run_label, run_seed, settings_text, smoke_text)
from utils.report.fmt import finite, ppl_text
from utils.report.read import as_float
from utils.runs import schema

GROUP_TITLES = {
    "lstm_optimizers": "LSTM (1 layer): optimizers compared",
    "gpt1_optimizers": "MiniGPT1 (1 layer): optimizers compared",
    "lstm_layers": "LSTM with AdamW: 1, 2 and 4 layers",
    "gpt1_layers": "MiniGPT1 with AdamW: 1, 2 and 4 layers",
}
DPI = 120
EPOCH1_SHORT = "MiniGPT1's epoch 1 starts at 52-64 nats/token (tied embeddings meet LayerNorm features): ignore it"


def time_unit(max_seconds):
    """(divisor, unit) so wall-clock axes read in s, min or h rather than 5-digit seconds."""
    if max_seconds >= 2 * 3600:
        return 3600.0, "h"
    if max_seconds >= 600:
        return 60.0, "min"
    return 1.0, "s"


def spans_decade(values):
    """True when the finite positive values span more than a factor of 10: use a log y axis."""
    values = [v for v in values if finite(v) and v > 0]
    return bool(values) and max(values) / min(values) > 10


def clean(values):
    """Non-finite values (a diverged run) become NaN, which matplotlib leaves as a gap."""
    return [v if finite(v) else math.nan for v in values]


def cumulative_train_seconds(epochs):
    """Training wall-clock at the end of each epoch (evaluation excluded; missing times count 0)."""
    total, out = 0.0, []
    for e in epochs:
        total += e["train_seconds"] if finite(e["train_seconds"]) else 0.0
        out.append(total)
    return out


def new_figure(width, height):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def style_axis(ax, title, xlabel, ylabel, log_values=None):
    """Titles and grid; a log y axis when log_values (the values of *every* panel of this quantity
    in the figure, so they decide together) span more than a decade."""
    ax.set_title(title, fontsize=12)
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    if log_values is not None and spans_decade(log_values):
        log_axis(ax, log_values)
        ax.set_ylabel(ylabel + " (log scale)", fontsize=11)
    ax.grid(True, alpha=0.3, which="both")


def log_axis(ax, values):
    """Log y axis. Over a few decades of moderate values it is labelled 100, 200, 500, 1,000...
    (plain numbers read better on paper); wider or huger ranges keep matplotlib's 10^k labels."""
    ax.set_yscale("log")
    values = [v for v in values if finite(v) and v > 0]
    if max(values) / min(values) <= 1e3 and 1 <= min(values) and max(values) < 1e6:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
        ax.yaxis.set_minor_formatter(NullFormatter())


def mark_divergence(ax, xs, bad):
    """A dotted line where values stopped being finite, so a diverged run's gap is explained."""
    for x, is_bad in zip(xs, bad):
        if is_bad:
            ax.axvline(x, color="k", linestyle=":", linewidth=1.2, label="non-finite (diverged)")
            return


def integer_epochs(ax, epochs):
    ax.set_xticks(epochs if len(epochs) <= 12 else epochs[:: math.ceil(len(epochs) / 12)])


def run_caption(run):
    """The small text under a run's figure: settings (only those the optimizer uses), embeddings,
    device, best value, status."""
    args = run.args
    keys = ("batch_size", "epochs", "max_batches")
    text = ", ".join([settings_text(args)] + [f"{k}={args[k]}" for k in keys if args.get(k) is not None]
                     + [f"seed={run_seed(args)}"] + (["lr tuned by the search"] if run_arm(args) == "tuned" else []))
    best = best_epoch(run.epochs)
    best_text = f"best val ppl {ppl_text(best['valid_ppl'])} at epoch {best['epoch']}" if best else "no finite val ppl"
    status = run.status + (f": {run.status_message}" if run.status_message else "")
    lines = ([smoke_text(args)] if is_smoke(args) else []) + [
        text, f"{embeddings_text(run)}; {device_text(run) or 'device not recorded'}",
        f"{best_text}; status: {status[:90]}"]
    if astronomical_start(run):
        lines.append(EPOCH1_SHORT)
    return "\n".join(lines)


def run_title(run):
    """One line: the run, and SMOKE RUN when its budget was tiny (the title is then red)."""
    return run_label(run) + (f" — {smoke_text(run.args).split(':')[0]}" if is_smoke(run.args) else "")


def titles(fig, title, caption=None, smoke=False):
    """A short title on top (red for a smoke run), the details in small grey text under the panels."""
    fig.suptitle(title, fontsize=14, color="firebrick" if smoke else "black")
    if caption:
        fig.supxlabel(caption, fontsize=9, color="dimgray")


def split_name(split):
    return {"train": "Training", "valid": "Validation"}.get(split, split)


def plot_run(run, path):
    """The notebook's figure: per panel of utils.runs.schema.PANELS (loss, perplexity) a row with each
    split's metric vs training time, then a row with every panel's metrics vs epoch."""
    epochs = [e["epoch"] for e in run.epochs]
    div, unit = time_unit(max(cumulative_train_seconds(run.epochs) or [0.0]))
    times = [t / div for t in cumulative_train_seconds(run.epochs)]
    drawn = [m for m in schema.EPOCH_METRICS if m.panel]
    series = {m.key: clean([as_float(e.get(m.key)) for e in run.epochs]) for m in drawn}
    by_panel = {panel: [m for m in drawn if m.panel == panel] for panel in schema.PANELS}
    scale = {panel: [v for m in ms for v in series[m.key]] for panel, ms in by_panel.items()}  # one log decision
    splits = list(dict.fromkeys(m.split for m in drawn))
    fig = new_figure(6 * max(len(splits), len(by_panel)), 4.2 * (len(by_panel) + 1) + 0.8)
    titles(fig, run_title(run), run_caption(run), is_smoke(run.args))
    axs = fig.subplots(len(by_panel) + 1, max(len(splits), len(by_panel)), squeeze=False)
    bad = [not all(finite(series[m.key][i]) for m in drawn) for i in range(len(run.epochs))]
    xlabel = f"Cumulative training time ({unit})"
    colours, markers = {s: f"C{3 * i}" for i, s in enumerate(splits)}, {s: "os^D"[i % 4] for i, s in enumerate(splits)}
    for row, (panel, label) in enumerate(schema.PANELS.items()):
        for m in by_panel[panel]:
            ax = axs[row, splits.index(m.split)]
            ax.plot(times, series[m.key], "o-", color=colours[m.split], markersize=4, label=m.heading)
            mark_divergence(ax, times, bad)
            ax.legend(fontsize=9)
            style_axis(ax, f"{m.heading} vs training time", xlabel, label, scale[panel])
    for col, (panel, label) in enumerate(schema.PANELS.items()):
        ax = axs[-1, col]
        for i, m in enumerate(by_panel[panel]):
            # Distinct marker, line style and size: a series hidden under another still shows its markers.
            ax.plot(epochs, series[m.key], marker=markers[m.split], linestyle=("-", "--", ":")[i % 3],
                    color=colours[m.split], markersize=7 - 2 * i, markerfacecolor="none" if i else colours[m.split],
                    label=m.heading)
        mark_divergence(ax, epochs, bad)
        ax.legend(fontsize=9)
        style_axis(ax, f"{label.split(' (')[0]} per epoch", "Epoch", label, scale[panel])
        integer_epochs(ax, epochs)
    fig.savefig(path, dpi=DPI)
    return fig
