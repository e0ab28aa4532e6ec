"""The tables: per run (Markdown, CSV) and per configuration over seeds (Markdown, LaTeX, CSV). Every
identifying setting that differs between rows gets a column; the CSV files keep raw floats."""
import csv
import io

from utils.report.compute import group_value, shown_run, varying_settings
from utils.report.fmt import MISSING, finite, lin_stat_text, lr_text, number_text, ppl_text, short_meaning, short_run
from utils.report.fmt import stat_text
from utils.runs import schema

NOT_MEASURED, NOT_LOGGED = "not measured (CPU)", "not logged"
METRICS = {m.key: m for m in schema.RUN_METRICS}
MEMORY_KEYS = tuple(k for k, m in METRICS.items() if m.fmt == "mb")  # NaN: "not measured (CPU)"
SETTING_KEYS = ("momentum", "weight_decay")  # blank where the run's optimizer does not use them
SET = "set:"  # column key prefix of a setting that differs between rows


def after(columns, key, extra):
    at = [k for k, _ in columns].index(key) + 1
    return columns[:at] + extra + columns[at:]


RUN_COLUMNS = [("run", "Config"), ("model", "Model"), ("layers", "Layers"), ("optimizer", "Optimizer"),
               ("seed", "Seed"), ("lr", "lr"), ("momentum", "Momentum"), ("weight_decay", "Weight decay"),
               ("params_learnable", "Learnable params"), ("params_frozen", "Frozen params"),
               *after([(m.key, m.heading) for m in schema.RUN_METRICS], "best_valid_ppl",
                      [("best_epoch", "Best epoch")]), ("status", "Status")]
CSV_KEYS = ["exp_id", "config", "seed", "arm", "lr", "lr_from"] + [k for k, _ in RUN_COLUMNS[1:] if k not in (
    "seed", "lr")] + ["smoke", "epochs_logged", "counted", "not_counted_why", "label", "path"]
GROUP_COLUMNS = [("name", "Config"), ("model", "Model"), ("optimizer", "Optimizer"), ("lr", "lr"), ("n", "Seeds"),
                 *[(m.key, m.heading) for m in schema.RUN_METRICS if m.group], ("status", "Status")]
LATEX_COLUMNS = [("name", "Cfg"), ("model", "Model"), ("optimizer", "Opt."), ("lr", "lr"), ("n", "n")] + [
    (m.key, m.latex) for m in schema.RUN_METRICS if m.latex]
FIT_OPEN = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"
LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "--"}


def with_settings(columns, arg_dicts, at="lr"):
    """`columns` with one column per setting that differs between `arg_dicts`, after `at`."""
    return after(columns, at, [(SET + k, k) for k in varying_settings(arg_dicts)])


def setting_text(value):
    return MISSING if value is None else lr_text(value) if isinstance(value, float) else str(value)


def run_cell(row, key):
    if key.startswith(SET):
        return setting_text(row["args"].get(key[len(SET):]))
    value = row[key]
    if key == "lr":
        return lr_text(value) + (" (tuned)" if row.get("arm") == "tuned" else "")
    if key in SETTING_KEYS:
        return "" if value is None else lr_text(value)
    if key in MEMORY_KEYS and value is not None and not finite(value):
        return NOT_MEASURED
    if value is None:
        return MISSING
    if key.startswith("params_"):
        return f"{value / 1e6:.2f}M"
    return number_text(value, METRICS[key].fmt) if key in METRICS else str(value)


def keep_columns(columns, rows, raw):
    """(columns with a value in some row, [(heading, why)] of the dropped ones)."""
    kept, dropped = [], []
    for key, heading in columns:
        values = [raw(row, key) for row in rows]
        if not rows or key in ("status", "run", "name") or key.startswith(SET) or \
                not all(v is None or (isinstance(v, float) and not finite(v)) for v in values):
            kept.append((key, heading))
        elif key in SETTING_KEYS:
            dropped.append((heading, "no run's optimizer uses it"))
        elif any(v is not None for v in values):
            dropped.append((heading, "not measured by any run: NaN, as on a CPU"))
        else:
            dropped.append((heading, "not logged by any of these runs (the course notebook's save_logs records "
                                     "no parameter counts or peak memory)"))
    return kept, dropped


def dropped_note(dropped):
    by_reason = {}
    for heading, why in dropped:
        by_reason.setdefault(why, []).append(heading)
    parts = "; ".join(f"{', '.join(headings)} ({why})" for why, headings in by_reason.items())
    return f"Columns left out because every row leaves them empty: {parts}." if parts else ""


def md_table(headings, rows):
    """A Markdown table's lines from rows of cells; a "|" in a cell is escaped."""
    return ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)] + [
        "| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]


def pipe_table(columns, rows, cell):
    return "\n".join(md_table([h for _, h in columns], [[cell(row, k) for k, _ in columns] for row in rows])) + "\n"


def markdown_table(rows):
    """(per-run table, dropped-columns sentence)."""
    columns = with_settings(RUN_COLUMNS, [row["args"] for row in rows], at="weight_decay")
    columns, dropped = keep_columns(columns, rows, lambda row, key: None if key.startswith(SET) else row[key])
    return pipe_table(columns, rows, run_cell), dropped_note(dropped)


def missing_memory(group, key):
    """Why a group has no memory value: NaN in its runs is "not measured (CPU)", absent "not logged"."""
    rows = list(group.members.values()) or list(group.rows.values())
    return NOT_MEASURED if any(r[key] is not None for r in rows) else NOT_LOGGED


def stat_mean(group, key):
    """What decides whether a per-configuration column is empty: a statistic's mean, else the cell."""
    if key not in group.stats:
        return group_cell(group, key)
    stat = group.stats[key]
    return stat["mean"] if stat else (float("nan") if missing_memory(group, key) == NOT_MEASURED else None)


def absent_text(group):
    return "; ".join(f"seed {s} {why}" for s, why in group.absent)


def status_text(group):
    """"completed", the seeds not averaged and why, or the one run's status when none completed."""
    if not group.members:
        run = shown_run(group)
        return group.rows[run.exp_id]["status"] if run.exp_id in group.rows else run.status
    mark = short_run(group.reference.args)
    return (absent_text(group) if group.absent else "completed") + (f" ({mark})" if mark else "")


def group_cell(group, key):
    if key.startswith(SET):
        return setting_text(group.reference.args.get(key[len(SET):]))
    simple = {"name": lambda: group.name, "model": lambda: f"{group_value(group, 'model')} x{group.what[1]}",
              "optimizer": lambda: str(group.what[2]), "lr": lambda: lr_text(group.reference.args.get("lr")),
              "n": lambda: str(group.n) if not group.absent else f"{group.n} of {group.n_of}",
              "status": lambda: status_text(group)}
    if key in simple:
        return simple[key]()
    stat = group.stats.get(key)
    return missing_memory(group, key) if stat is None and key in MEMORY_KEYS else stat_text(stat, METRICS[key].fmt)


def group_table(groups):
    """(per-configuration table over seeds, dropped-columns sentence)."""
    columns = with_settings(GROUP_COLUMNS, [g.reference.args for g in groups])
    columns, dropped = keep_columns(columns, groups, stat_mean)
    return pipe_table(columns, groups, group_cell), dropped_note(dropped)


def csv_text(rows):
    """One line per run: raw numbers; empty = not logged (or not used by the optimizer), nan = not measured."""
    keys = CSV_KEYS + varying_settings([row["args"] for row in rows])
    return write_csv(keys, [{k: row[k] if k in CSV_KEYS else row["args"].get(k) for k in keys} for row in rows])


def group_csv_text(groups):
    """One line per configuration and arm: n, the seeds used and not, and every statistic raw."""
    records = []
    for g in groups:
        record = {"name": g.name, "config": g.config, "arm": g.arm, "model": g.what[0], "layers": g.what[1],
                  "optimizer": g.what[2], "lr": g.reference.args.get("lr"), "n": g.n, "n_of": g.n_of,
                  "seeds": " ".join(map(str, g.members)),
                  "not_used": "; ".join(f"seed {s}: {why}" for s, why in g.absent)}
        for key, stat in g.stats.items():
            for part in ("mean", "sd", "sd_log", "lo", "hi"):
                if stat is not None and part in stat:
                    record[f"{key}_{'gmean' if 'sd_log' in stat and part == 'mean' else part}"] = stat[part]
        records.append(record)
    return write_csv(list(dict.fromkeys(k for r in records for k in r)), records)


def write_csv(keys, records):
    """CSV text of `records` (dicts) under `keys`: a key a record lacks, or None, is an empty cell."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if r.get(k) is None else r[k] for k in keys} for r in records)
    return out.getvalue()


def latex_escape(text):
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def factor_text(stat, number=lambda x: ppl_text(x, latex=True, decimals=0 if finite(x) and abs(x) >= 100 else 1)):
    """A log-space stat as "m ×/÷ f" (the interval [m/f, m·f]); just m with one seed."""
    return number(stat["mean"]) + (rf" $\times/\div$ {stat['factor']:.2f}" if stat["factor"] is not None else "")


def latex_cell(group, key):
    """Raw LaTeX for numbers; names and words escaped; a group with no completed seed shows its status."""
    if key in METRICS:
        fmt, stat = METRICS[key].fmt, group.stats.get(key)
        if stat is None:
            return {NOT_MEASURED: "n/m", NOT_LOGGED: "--"}[missing_memory(group, key)] if fmt == "mb" else "--"
        if fmt == "mb":
            return factor_text(dict(stat, mean=stat["mean"] / 1024), lambda gb: f"{gb:.1f}")
        if fmt == "ppl":
            return factor_text(stat)
        return factor_text(stat, lambda x: number_text(x, fmt, True)) if "factor" in stat else \
            lin_stat_text(stat, fmt, latex=True)
    if key in ("n", "status"):
        done = f"{group.n}/{group.n_of}" if key == "n" else "completed"
        return done if group.n else latex_escape(shown_run(group).status)
    if key == "name" and short_run(group.reference.args):
        return latex_escape(group.name) + r"$^\dagger$"
    return latex_escape(group_cell(group, key))


def caption(groups, dropped, one_seed):
    seeds = ("One seed per configuration, so no interval can be computed. " if one_seed else
             r"n: completed seeds (of those run; results.md lists why the others are missing). ")
    text = (r"Wikitext-2 results per configuration. Cfg: the assignment's configuration number, ``-tuned'' at "
            r"the learning rate chosen by the search (otherwise the course's). Opt.: optimizer. " + seeds +
            r"Best val ppl: per-token perplexity at the epoch of lowest validation perplexity; Test ppl: the final "
            r"model's, on the test split. Perplexities are geometric means over seeds; $m \times/\div f$ is the 95\% "
            r"Student-t interval $[m/f,\,m f]$ of the mean log perplexity ($n-1$ degrees of freedom). s/epoch: "
            r"training wall-clock per epoch (evaluation excluded), and Peak GB: peak GPU memory, are summarised the "
            r"same way; n/m: not measured (CPU); --: not logged. Per-run numbers: results.csv.")
    marks = dict.fromkeys(m for m in (short_run(g.reference.args) for g in groups) if m)
    if marks:
        text += r" $^\dagger$" + "; ".join(latex_escape(f"{m}: {short_meaning(m)}") for m in marks) + "."
    if dropped:
        text += " Left out, empty for every row: " + "; ".join(
            f"{latex_escape(h)} ({latex_escape(why)})" for h, why in dropped) + "."
    return text


def latex_table(groups):
    """A booktabs table environment over SeedGroups; needs booktabs and graphicx."""
    columns = with_settings(LATEX_COLUMNS, [g.reference.args for g in groups])
    columns, dropped = keep_columns(columns, groups, stat_mean)
    one_seed = all(g.n_of <= 1 for g in groups)
    if one_seed:  # n would be 1/1 throughout: a status column says what matters instead, if anything
        columns = [c for c in columns if c[0] != "n" or not all(g.n for g in groups)]
        columns = [("status", "Status") if key == "n" else (key, h) for key, h in columns]
    spec = "".join("l" if key in ("name", "model", "optimizer") else "r" for key, _ in columns)
    return "\n".join([
        "% Requires \\usepackage{booktabs} and \\usepackage{graphicx} in the preamble.",
        r"\begin{table}[ht]", r"\centering", r"\small", r"\setlength{\tabcolsep}{3pt}",
        rf"\caption{{{caption(groups, dropped, one_seed)}}}", r"\label{tab:results}", FIT_OPEN,
        rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(latex_escape(h) for _, h in columns) + r" \\",
        r"\midrule", *[" & ".join(latex_cell(g, key) for key, _ in columns) + r" \\" for g in groups],
        r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""])
