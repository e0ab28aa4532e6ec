"""The numbers the assignment asks for, computed from RunLog records by pure functions,
and the results table written as Markdown, LaTeX (booktabs) and CSV."""
import csv
import io
import math
from statistics import mean

from utils.configs import MODEL_NAMES
from utils.report_data import as_float

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


def finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def run_name(run):
    """The configuration number, with the folder when it differs ("3 [old3]"); a custom run's folder."""
    if run.config is None:
        return run.exp_id
    return str(run.config) if run.exp_id == str(run.config) else f"{run.config} [{run.exp_id}]"


def run_label(run):
    """Legend/table name, e.g. "3: LSTM x1, sgd" or "3 [old3]: LSTM x1, sgd"."""
    args = run.args
    name = MODEL_NAMES.get(args.get("model"), str(args.get("model")))
    return f"{run_name(run)}: {name} x{args.get('layers')}, {args.get('optimizer')}"


def best_epoch(epochs):
    """The epoch record with the lowest finite validation perplexity (earliest on ties), or None."""
    candidates = [e for e in epochs if finite(e["valid_ppl"])]
    return min(candidates, key=lambda e: (e["valid_ppl"], e["epoch"])) if candidates else None


def peak_memory(epochs):
    """Largest per-epoch peak in MB; NaN when logged as null (CPU); None when never logged."""
    values = [e["peak_memory_mb"] for e in epochs if "peak_memory_mb" in e]
    if not values:
        return None
    measured = [x for x in map(as_float, values) if finite(x)]
    return max(measured) if measured else math.nan


def summarise(run):
    """One results-table row (a dict keyed by CSV_KEYS) for a run."""
    best = best_epoch(run.epochs)
    seconds = [e["train_seconds"] for e in run.epochs if finite(e["train_seconds"])]
    args = run.args
    row = {
        "exp_id": run.exp_id,
        "config": run.config,
        "run": run_name(run),
        "label": run_label(run),
        "model": MODEL_NAMES.get(args.get("model"), str(args.get("model"))),
        "layers": args.get("layers"),
        "optimizer": args.get("optimizer"),
        "params_learnable": run.provenance.get("params_learnable"),
        "params_frozen": run.provenance.get("params_frozen"),
        "best_valid_ppl": best["valid_ppl"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "train_ppl_at_best": best["train_ppl"] if best else None,
        "test_ppl": run.test.get("ppl"),
        "train_time_s": sum(seconds) if seconds else None,
        "time_per_epoch_s": mean(seconds) if seconds else None,
        "peak_memory_mb": peak_memory(run.epochs),
        "steady_memory_mb": run.steady_memory_mb,
        "status": run.status + (" (smoke)" if is_smoke(args) else ""),
        "epochs_logged": len(run.epochs),
    }
    row["not_counted_why"] = exclusion_reason(run, row) or ""
    row["counted"] = not row["not_counted_why"]
    return row


def is_smoke(args):
    return bool(args.get("smoke")) or args.get("max_batches") not in (None, 0)


def exclusion_reason(run, row):
    """Why a run does not take part in the answers (fastest, best, averages); None if it does.
    Only finished runs are compared: a partial run would look fast, a diverged one has no fair ppl."""
    if run.status != "completed":
        if run.status == "running":
            return f"running ({len(run.epochs)} of {run.args.get('epochs')} epochs)"
        return run.status + (f": {run.status_message}" if run.status_message else "")
    if not finite(row["best_valid_ppl"]):
        return "no finite validation perplexity"
    if row["train_time_s"] is None:
        return "no training time logged"
    return None


def mark_duplicates(rows):
    """Keep one run per configuration in the answers, so a rerun does not weigh twice in an average:
    the run in the folder named after the configuration, else the first folder."""
    chosen = {}
    for row in rows:
        if row["counted"] and row["config"] is not None:
            best = chosen.get(row["config"])
            if best is None or (row["exp_id"] == str(row["config"]) and best["exp_id"] != str(best["config"])):
                chosen[row["config"]] = row
    for row in rows:
        keep = chosen.get(row["config"])
        if row["counted"] and keep is not None and keep is not row:
            row["counted"] = False
            row["not_counted_why"] = f"another run of configuration {row['config']} ({keep['exp_id']}) is used"
    return rows


def fastest(rows):
    """(row, how) for the fastest counted run by training wall-clock. Runs with different epoch counts
    are compared per epoch, since total time would favour the shorter budget."""
    rows = [r for r in rows if r["counted"]]
    if not rows:
        return None, None
    if len({r["epochs_logged"] for r in rows}) == 1:
        return min(rows, key=lambda r: r["train_time_s"]), "total training time"
    return min(rows, key=lambda r: r["time_per_epoch_s"]), "training time per epoch (runs differ in epochs)"


def best_generalising(rows):
    """The counted run with the lowest best validation perplexity, or None."""
    rows = [r for r in rows if r["counted"]]
    return min(rows, key=lambda r: r["best_valid_ppl"]) if rows else None


def averages(rows, key, where=lambda row: True):
    """Per value of rows[key] (e.g. "optimizer"): n, members, mean time, mean time/epoch, mean best val ppl."""
    groups = {}
    for row in rows:
        if row["counted"] and where(row):
            groups.setdefault(row[key], []).append(row)
    return [
        {
            key: value,
            "n": len(members),
            "members": [m["config"] if m["config"] is not None else m["exp_id"] for m in members],
            "mean_train_time_s": mean(m["train_time_s"] for m in members),
            "mean_time_per_epoch_s": mean(m["time_per_epoch_s"] for m in members),
            "mean_best_valid_ppl": mean(m["best_valid_ppl"] for m in members),
            # Perplexities spread over decades: the geometric mean (exp of the mean loss) is not
            # dominated by one bad optimizer the way the arithmetic mean is.
            "geomean_best_valid_ppl": math.exp(mean(math.log(m["best_valid_ppl"]) for m in members)),
        }
        for value, members in groups.items()
    ]


def one_layer(row):
    """The optimizer comparison holds depth fixed (configurations 1-8); deeper runs would bias AdamW."""
    return row["layers"] == 1


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


def answers(rows):
    """The assignment's questions, answered from the counted runs (see exclusion_reason)."""
    quickest, how = fastest(rows)
    return {
        "fastest": quickest,
        "fastest_by": how,
        "best": best_generalising(rows),
        "per_optimizer": averages(rows, "optimizer", one_layer),
        "per_architecture": averages(rows, "model"),
    }
