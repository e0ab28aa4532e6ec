"""results.tex: the per-configuration table in booktabs, narrow enough for a page.

One row per configuration and arm (seeds aggregated; per-run numbers stay in results.md and
results.csv). To fit a page without shrinking the font to nothing: \\small, 3pt column gaps, few
columns, short headings explained in the caption, perplexities to ~3 significant digits with their
interval as a geometric mean ×/÷ a factor (half the width of [lo, hi]), memory in GB, and columns
empty for every row left out. A 12-configuration study with tuned runs prints about 425pt wide,
within 1-inch margins; on a narrower text width the tabular is scaled down to \\linewidth (only
ever down: the \\resizebox guard leaves a table that fits at its natural size).
"""
from utils.report.aggregate import shown_run
from utils.report.describe import is_smoke
from utils.report.fmt import finite, lin_stat_text, lr_text, number_text, ppl_text
from utils.runs import schema
from utils.report.tables import NOT_LOGGED, NOT_MEASURED, group_cell, keep_columns, missing_memory, stat_mean

COLUMNS = [("name", "Cfg"), ("model", "Model"), ("optimizer", "Opt."), ("lr", "lr"), ("n", "n")] + [
    (m.key, m.latex) for m in schema.RUN_METRICS if m.latex]
METRICS = {m.key: m for m in schema.RUN_METRICS}
SHORT = {NOT_MEASURED: "n/m", NOT_LOGGED: "--"}
# Shrink to the text width only when wider (graphicx lets \width mean the box's natural width here).
FIT_OPEN = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"

LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "--",
}


def latex_escape(text):
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def compact_ppl(x):
    """Three significant digits or so: 238, 45.3, 2{,}145, $1.23\times10^{22}$ (the intervals are wider)."""
    return ppl_text(x, latex=True, decimals=0 if finite(x) and abs(x) >= 100 else 1)


def factor_text(stat, number=compact_ppl):
    """A log-space stat as "m ×/÷ f": the interval is [m/f, m·f]; just m with one seed."""
    if stat is None:
        return "--"
    text = number(stat["mean"])
    return text + (rf" $\times/\div$ {stat['factor']:.2f}" if stat["factor"] is not None else "")


def gigabytes(stat):
    if stat is None:
        return None
    return factor_text(dict(stat, mean=stat["mean"] / 1024), lambda gb: f"{gb:.1f}")


# A number column's cell by the metric's format (the interval as a factor, which stays narrow);
# other formats write the value as the tables do.
CELLS = {"ppl": factor_text, "mb": gigabytes}


def metric_cell(group, key):
    fmt, stat = METRICS[key].fmt, group.stats.get(key)
    if fmt in CELLS:
        text = CELLS[fmt](stat)
    else:
        text = factor_text(stat, lambda x: number_text(x, fmt, latex=True)) if stat and "factor" in stat else \
            lin_stat_text(stat, digits=1, latex=True, missing="--")
    return SHORT[missing_memory(group, key)] if text is None else text


def cell(group, key):
    """Raw LaTeX for number cells; names and words are escaped."""
    if key in METRICS:
        return metric_cell(group, key)
    if key == "lr":
        return lr_text(group.reference.args.get("lr"))
    if key in ("n", "status"):
        # No completed seed: the run's status stands in (diverged, running...), so nothing looks final.
        done = f"{group.n}/{group.n_of}" if key == "n" else "completed"
        return done if group.n else latex_escape(shown_run(group).status)
    if key == "name" and is_smoke(group.reference.args):
        return latex_escape(group.name) + r"$^\dagger$"
    return latex_escape(group_cell(group, key))


def one_seed(groups):
    return all(g.n_of <= 1 for g in groups)


def caption(groups, dropped):
    seeds = ("One seed per configuration, so no interval can be computed. " if one_seed(groups) else
             r"n: completed seeds (of those run; results.md lists why the others are missing). ")
    text = (r"Wikitext-2 results per configuration. Cfg: the assignment's configuration number, "
            r"``-tuned'' at the learning rate chosen by the search (otherwise the course's). Opt.: optimizer. "
            + seeds +
            r"Best val ppl: per-token perplexity at the epoch of lowest validation perplexity; Test ppl: on the "
            r"test split. Perplexities are geometric means over seeds; $m \times/\div f$ is the 95\% Student-t "
            r"interval $[m/f,\,m f]$ of the mean log perplexity ($n-1$ degrees of freedom). s/epoch: training "
            r"wall-clock per epoch (evaluation excluded), and Peak GB: peak GPU memory, are positive too and "
            r"summarised the same way (geometric mean $\times/\div$ 95\% factor, so no bound goes below zero); "
            r"n/m: not measured (CPU); --: not logged. Per-run numbers: results.csv.")
    if any(is_smoke(g.reference.args) for g in groups):
        text += r" $^\dagger$Smoke run (a few batches): its numbers only show that the pipeline works."
    if dropped:
        text += " Left out, empty for every row: " + "; ".join(
            f"{latex_escape(h)} ({latex_escape(why)})" for h, why in dropped) + "."
    return text


def latex_table(groups):
    """A complete table environment over SeedGroups; needs booktabs and graphicx."""
    columns, dropped = keep_columns(COLUMNS, groups, stat_mean)
    if one_seed(groups):  # n would be 1/1 throughout: a status column says what matters instead
        columns = [("status", "Status") if key == "n" else (key, h) for key, h in columns]
        if all(g.n for g in groups):
            columns = [c for c in columns if c[0] != "status"]
    spec = "".join("l" if key in ("name", "model", "optimizer") else "r" for key, _ in columns)
    body = [" & ".join(cell(g, key) for key, _ in columns) + r" \\" for g in groups]
    return "\n".join([
        "% Requires \\usepackage{booktabs} and \\usepackage{graphicx} in the preamble.",
        r"\begin{table}[ht]",
        r"\centering",
        r"\small",
        r"\setlength{\tabcolsep}{3pt}",
        rf"\caption{{{caption(groups, dropped)}}}",
        r"\label{tab:results}",
        FIT_OPEN,
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for _, h in columns) + r" \\",
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}}",
        r"\end{table}",
        "",
    ])
