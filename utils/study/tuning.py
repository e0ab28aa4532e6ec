"""A fair learning rate per optimizer: a short search over a grid, chosen on validation only.

At the course's lr of 1e-3 a comparison measures the lr more than the optimizer (docs/study.md).
One short run per (model, optimizer, grid value) on the 1-layer model; the lowest best VALIDATION
perplexity wins (diverged or failed values never do), recorded in <log_dir>/tuning/tuning.json.
The default budget (100 batches, ~1/6 of an epoch) separates a step size that learns from one that
stalls or diverges.
"""
import os

from utils.runs import schema
from utils.runs.atomic import atomic_write_json
from utils.runs.run_dir import RunDir
from utils.study.configs import CONFIGS
from utils.train.optim import OPTIMIZERS
from utils.train.settings import LR_LIMIT, SMOKE, UsageError

DEFAULT_BUDGET = {"epochs": 1, "max_batches": 100}
SMOKE_BUDGET = {"epochs": 1, "max_batches": SMOKE["max_batches"]}


def parse_grid(text):
    """ "sgd=0.1,1;adam=1e-3,3e-3" -> {"sgd": (0.1, 1.0), "adam": (0.001, 0.003)}; others keep their default."""
    grids = {name: spec.grid for name, spec in OPTIMIZERS.items()}
    for part in filter(None, (text or "").split(";")):
        name, _, values = part.partition("=")
        try:
            lrs = tuple(float(v) for v in values.split(","))
        except ValueError:
            lrs = ()
        if name.strip() not in grids or not lrs or not all(0 < lr <= LR_LIMIT for lr in lrs):  # nan, inf too
            raise UsageError(f"Bad --tune_grid part {part!r}: use optimizer=lr,lr,... with optimizers among "
                             f"{', '.join(OPTIMIZERS)} and lrs in (0, {LR_LIMIT:g}], parts joined by ';'.")
        grids[name.strip()] = lrs
    return grids


def search_pairs(numbers):
    """The (model, optimizer) pairs the configurations use, in configuration order."""
    return list(dict.fromkeys((CONFIGS[n].model, CONFIGS[n].optimizer) for n in numbers))


def tuning_dir(log_dir):
    return os.path.join(log_dir, schema.TUNING_DIR)


def search_jobs(numbers, grids, budget, study_log_dir, main=None, **overrides):
    """One validation-only 1-layer job per (model, optimizer, lr) in <log_dir>/tuning/, with `overrides`."""
    from utils.study.sweep import Job, config_settings

    overrides = {k: v for k, v in overrides.items() if k not in ("log_dir", "exp_id", "lr")}
    log_dir, jobs = study_log_dir, []
    for model, optimizer in search_pairs(numbers):
        base = next(n for n in CONFIGS if (CONFIGS[n].model, CONFIGS[n].optimizer) == (model, optimizer))
        for lr in grids[optimizer]:
            fields = dict(overrides, layers=1, lr=lr, config=None, log_dir=tuning_dir(log_dir), **budget,
                          exp_id=schema.tuning_run_id(model, optimizer, lr))
            settings = config_settings(base, **fields)
            jobs.append(Job(settings, f"search {model}/{optimizer} lr {lr:g}", with_test=False, main=main))
    return jobs


def choose(results):
    """{(model, optimizer): lr} with the lowest best validation perplexity among completed grid points."""
    choice = {}
    for r in results:
        if r["status"] != schema.COMPLETED or r["best_valid_ppl"] is None:
            continue
        key = (r["model"], r["optimizer"])
        if key not in choice or r["best_valid_ppl"] < choice[key][1]:
            choice[key] = (r["lr"], r["best_valid_ppl"])
    return {key: lr for key, (lr, _) in choice.items()}


def record_search(numbers, grids, budget, log_dir, settings):
    """Read every grid point's result, choose, write tuning.json; returns (record, path)."""
    results = []
    for model, optimizer in search_pairs(numbers):
        for lr in grids[optimizer]:
            exp_id = schema.tuning_run_id(model, optimizer, lr)
            run_dir = RunDir(tuning_dir(log_dir), exp_id)  # status.json and metrics.jsonl only: never a test file
            status = (run_dir.status() or {}).get("status", "missing")
            results.append(dict(model=model, optimizer=optimizer, lr=lr, exp_id=exp_id, status=status,
                                best_valid_ppl=run_dir.best_valid_ppl()))
    choice = choose(results)
    record = {
        "budget": dict(budget, batch_size=settings.batch_size, seed=settings.seed),
        "grids": {opt: list(grids[opt]) for _, opt in search_pairs(numbers)},
        "metric": "best_valid_ppl", "results": results,
        "choice": {f"{model}/{optimizer}": lr for (model, optimizer), lr in choice.items()},
    }
    path = os.path.join(tuning_dir(log_dir), schema.TUNING_RECORD)
    atomic_write_json(path, record)
    return record, path


def tuned_choices(record, path):
    """{(model, optimizer): (lr, record path)} as sweep.config_jobs takes it."""
    return {tuple(key.split("/")): (lr, os.path.abspath(path)) for key, lr in record["choice"].items()}
