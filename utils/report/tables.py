"""The results table rendered as Markdown, LaTeX (booktabs) and CSV, from summarise()'s rows."""
import csv
import io

from utils.report.compute import finite

NOT_MEASURED = "not measured (CPU)"
NOT_LOGGED = "not logged"

# (CSV key, table heading) in the order of every results table.
COLUMNS = [
    ("run", "Config"),
    ("model", "Model"),
    ("layers", "Layers"),
    ("optimizer", "Optimizer"),
    ("params_learnable", "Learnable params"),
    ("params_frozen", "Frozen params"),
    ("best_valid_ppl", "Best val ppl"),
    ("best_epoch", "Best epoch"),
    ("train_ppl_at_best", "Train ppl at best"),
    ("test_ppl", "Test ppl"),
    ("train_time_s", "Train time (s)"),
    ("time_per_epoch_s", "Time/epoch (s)"),
    ("peak_memory_mb", "Peak mem (MB)"),
    ("steady_memory_mb", "Steady mem (MB)"),
    ("status", "Status"),
]
CSV_KEYS = ["exp_id", "config"] + [key for key, _ in COLUMNS[1:]] + [
    "epochs_logged", "counted", "not_counted_why", "label"]


def memory_text(value, not_measured=NOT_MEASURED, unit=" MB"):
    if value is None:
        return NOT_LOGGED
    return not_measured if not finite(value) else f"{value:.1f}{unit}"


def format_cell(key, value, not_measured=NOT_MEASURED, missing="—"):
    """Human-readable cell: ppl with 2 decimals (0 when >= 1000), params in millions, memory in MB."""
    if key in ("peak_memory_mb", "steady_memory_mb") and value is not None:
        return memory_text(value, not_measured, unit="")
    if value is None:
        return missing
    if key.startswith("params_"):
        return f"{value / 1e6:.2f}M"
    if key in ("best_valid_ppl", "train_ppl_at_best", "test_ppl"):
        return f"{value:.0f}" if finite(value) and value >= 1000 else f"{value:.2f}"
    if key in ("train_time_s", "time_per_epoch_s"):
        return f"{value:.1f}"
    return str(value)


def markdown_table(rows):
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [format_cell(k, row[k]).replace("|", "\\|") for k, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "--",
}


def latex_escape(text):
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def latex_table(rows):
    """A complete table environment; needs \\usepackage{booktabs} and \\usepackage{graphicx}."""
    spec = "r" + "l" * 3 + "r" * (len(COLUMNS) - 5) + "l"
    head = " & ".join(latex_escape(h) for _, h in COLUMNS) + r" \\"
    # Narrow "n/a" and "--" keep the columns printable; the caption says what they mean.
    body = [" & ".join(latex_escape(format_cell(k, row[k], "n/a", "--")) for k, _ in COLUMNS) + r" \\" for row in rows]
    return "\n".join([
        "% Requires \\usepackage{booktabs} and \\usepackage{graphicx} in the preamble.",
        r"\begin{table}[ht]",
        r"\centering",
        r"\caption{Wikitext-2 results per configuration. Perplexities are per token; times are training "
        r"wall-clock (evaluation excluded); memory is GPU memory, n/a where not measured (CPU); -- where not logged.}",
        r"\label{tab:results}",
        r"\resizebox{\linewidth}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        head,
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}}",
        r"\end{table}",
        "",
    ])


def csv_text(rows):
    """Machine-readable: raw numbers; empty = not logged, nan = not measured (CPU)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_KEYS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_KEYS})
    return out.getvalue()


