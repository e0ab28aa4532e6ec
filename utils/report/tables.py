"""The results tables: per run (Markdown, CSV) and per configuration over seeds (Markdown, LaTeX,
CSV). Columns that every row leaves empty (GPU memory on a CPU, parameter counts of old runs,
momentum when no optimizer uses it) are dropped, and dropped_note says which and why. The CSV
files keep raw floats at full precision; everything else goes through utils.report.fmt."""
import csv
import io

from utils.report.aggregate import status_text
from utils.report.compute import group_value
from utils.report.fmt import MISSING, finite, lr_text, number_text, stat_text
from utils.runs import schema

NOT_MEASURED = "not measured (CPU)"
NOT_LOGGED = "not logged"
METRICS = {m.key: m for m in schema.RUN_METRICS}  # the numbers' columns: heading and format from the schema
MEMORY_KEYS = tuple(k for k, m in METRICS.items() if m.fmt == "mb")  # NaN: "not measured (CPU)"
SETTING_KEYS = ("momentum", "weight_decay")  # blank where the run's optimizer does not use them


def metric_columns(keep=lambda m: True):
    return [(m.key, m.heading) for m in schema.RUN_METRICS if keep(m)]


def after(columns, key, extra):
    """`columns` with `extra` inserted after the column `key`."""
    at = [k for k, _ in columns].index(key) + 1
    return columns[:at] + [extra] + columns[at:]


# (row key, heading) of the per-run table, in order.
RUN_COLUMNS = [
    ("run", "Config"), ("model", "Model"), ("layers", "Layers"), ("optimizer", "Optimizer"), ("seed", "Seed"),
    ("lr", "lr"), ("momentum", "Momentum"), ("weight_decay", "Weight decay"),
    ("params_learnable", "Learnable params"), ("params_frozen", "Frozen params"),
    *after(metric_columns(), "best_valid_ppl", ("best_epoch", "Best epoch")), ("status", "Status"),
]
CSV_KEYS = ["exp_id", "config", "seed", "arm", "lr", "lr_from"] + [
    k for k, _ in RUN_COLUMNS[1:] if k not in ("seed", "lr")] + [
    "smoke", "epochs_logged", "counted", "not_counted_why", "label", "path"]
# (stat key, heading) of the per-configuration table: each metric's summary over seeds.
GROUP_COLUMNS = [
    ("name", "Config"), ("model", "Model"), ("optimizer", "Optimizer"), ("lr", "lr"), ("n", "Seeds"),
    *metric_columns(lambda m: m.group), ("status", "Status"),
]


def memory_text(value, not_measured=NOT_MEASURED, unit=" MB"):
    if value is None:
        return NOT_LOGGED
    return not_measured if not finite(value) else f"{value:.1f}{unit}"


def format_cell(key, value, not_measured=NOT_MEASURED, missing=MISSING, latex=False):
    """Human-readable cell: ppl via fmt.ppl_text (scientific where huge), params in millions,
    memory in MB, optimizer settings blank where unused."""
    if key in MEMORY_KEYS and value is not None:
        return memory_text(value, not_measured, unit="")
    if key in SETTING_KEYS:
        return "" if value is None else lr_text(value)
    if value is None:
        return missing
    if key.startswith("params_"):
        return f"{value / 1e6:.2f}M"
    if key in METRICS:
        return number_text(value, METRICS[key].fmt, latex)
    return str(value)


def run_cell(row, key):
    if key == "lr":
        return lr_text(row["lr"]) + (" (tuned)" if row.get("arm") == "tuned" else "")
    return format_cell(key, row[key])


def is_empty(values):
    """Every value missing (None) or not measured (NaN): the column says nothing."""
    return all(v is None or (isinstance(v, float) and not finite(v)) for v in values)


def empty_reason(key, values):
    if key in SETTING_KEYS:
        return "no run's optimizer uses it"
    if any(v is not None for v in values):
        return "not measured by any run: NaN, as on a CPU"
    return "not logged by any of these runs (old notebook runs record no parameter counts or memory)"


def keep_columns(columns, rows, raw):
    """(columns with a value in some row, [(heading, why)] of the dropped ones). raw(row, key) gives
    the value that decides emptiness (a stat's mean for the per-configuration table)."""
    kept, dropped = [], []
    for key, heading in columns:
        values = [raw(row, key) for row in rows]
        if rows and key not in ("status", "run", "name") and is_empty(values):
            dropped.append((heading, empty_reason(key, values)))
        else:
            kept.append((key, heading))
    return kept, dropped


def dropped_note(dropped):
    """One sentence naming the dropped columns and why, grouped by reason; "" when none."""
    by_reason = {}
    for heading, why in dropped:
        by_reason.setdefault(why, []).append(heading)
    if not by_reason:
        return ""
    parts = "; ".join(f"{', '.join(headings)} ({why})" for why, headings in by_reason.items())
    return f"Columns left out because every row leaves them empty: {parts}."


def pipe_table(columns, rows, cell):
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row, k).replace("|", "\\|") for k, _ in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_table(rows):
    """(per-run table, dropped-columns sentence)."""
    columns, dropped = keep_columns(RUN_COLUMNS, rows, lambda row, key: row[key])
    return pipe_table(columns, rows, run_cell), dropped_note(dropped)


def stat_mean(group, key):
    """What decides whether a per-configuration column is empty: a statistic's mean (NaN: not
    measured, None: not logged); the cell text for columns that are not statistics."""
    if key not in group.stats:
        return group_cell(group, key)
    stat = group.stats[key]
    return stat["mean"] if stat else (float("nan") if missing_memory(group, key) == NOT_MEASURED else None)


def missing_memory(group, key):
    """Why a group has no memory value: NaN in its runs is "not measured (CPU)", absent is "not logged"."""
    rows = list(group.members.values()) or list(group.rows.values())
    return NOT_MEASURED if any(r[key] is not None for r in rows) else NOT_LOGGED


def group_cell(group, key, latex=False):
    if key == "name":
        return group.name
    if key == "model":
        return f"{group_value(group, 'model')} x{group.what[1]}"
    if key == "optimizer":
        return str(group.what[2])
    if key == "lr":
        return lr_text(group.reference.args.get("lr"))
    if key == "n":
        return str(group.n) if not group.absent else f"{group.n} of {group.n_of}"
    if key == "status":
        return status_text(group)
    stat = group.stats.get(key)
    if stat is None and key in MEMORY_KEYS:
        return missing_memory(group, key)
    return stat_text(stat, METRICS[key].fmt, latex)


def group_table(groups):
    """(per-configuration table over seeds, dropped-columns sentence)."""
    columns, dropped = keep_columns(GROUP_COLUMNS, groups, stat_mean)
    return pipe_table(columns, groups, group_cell), dropped_note(dropped)


def csv_text(rows):
    """Machine-readable, one line per run: raw numbers; empty = not logged (or not used by the
    optimizer), nan = not measured (CPU)."""
    return write_csv(CSV_KEYS, [{k: ("" if row[k] is None else row[k]) for k in CSV_KEYS} for row in rows])


def group_csv_text(groups):
    """One line per configuration and arm: n, the seeds used and not, and every statistic raw."""
    records = []
    for g in groups:
        record = {"name": g.name, "config": g.config, "arm": g.arm, "model": g.what[0], "layers": g.what[1],
                  "optimizer": g.what[2], "lr": g.reference.args.get("lr"), "n": g.n, "n_of": g.n_of,
                  "seeds": " ".join(map(str, g.members)),
                  "not_used": "; ".join(f"seed {s}: {why}" for s, why in g.absent)}
        for key, stat in g.stats.items():
            log = stat is not None and "sd_log" in stat  # geometric mean and its interval
            for part in ("mean", "sd", "sd_log", "lo", "hi"):
                if stat is not None and part in stat:
                    record[f"{key}_{'gmean' if log and part == 'mean' else part}"] = stat[part]
        records.append(record)
    keys = list(dict.fromkeys(k for r in records for k in r))
    return write_csv(keys, [{k: ("" if r.get(k) is None else r[k]) for k in keys} for r in records])


def write_csv(keys, records):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()
