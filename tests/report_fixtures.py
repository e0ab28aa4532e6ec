"""Synthetic run folders in both log formats (run_exp.py's metrics.jsonl and the old notebook's
*.txt files), with values chosen so the report's answers can be checked by hand."""
import json
import math
import os

from utils.configs import CONFIGS


def config_args(number, **extra):
    c = CONFIGS[number]
    args = dict(model=c.model, layers=c.layers, optimizer=c.optimizer, lr=1e-3, momentum=0.9,
                weight_decay=5e-4, batch_size=c.batch_size, epochs=c.epochs, exp_id=str(number), config=number)
    args.update(extra)
    return args


def write_json(path, obj):
    with open(path, "w") as handle:
        json.dump(obj, handle)


def write_lines(path, values):
    with open(path, "w") as handle:
        handle.write("".join(f"{v}\n" for v in values))


def epoch_records(valid_ppls, train_ppls, train_seconds, peak_mb=None):
    return [
        dict(epoch=i + 1, train_loss=math.log(t) if t > 0 else t, train_ppl=t,
             valid_loss=math.log(v) if v > 0 and math.isfinite(v) else v, valid_ppl=v,
             train_seconds=s, valid_seconds=s / 10, train_tokens_per_s=1000.0, lr=1e-3, peak_memory_mb=peak_mb)
        for i, (v, t, s) in enumerate(zip(valid_ppls, train_ppls, train_seconds))
    ]


def write_run(log_dir, name, args, valid_ppls, train_ppls, train_seconds, status="completed",
              test_ppl=None, steady_mb=None, peak_mb=None, provenance=None, samples=None):
    """A run_exp.py-style folder: args, metrics.jsonl, status, provenance, test files when completed."""
    run_dir = os.path.join(log_dir, name)
    os.makedirs(run_dir, exist_ok=True)
    write_json(os.path.join(run_dir, "args.json"), args)
    records = epoch_records(valid_ppls, train_ppls, train_seconds, peak_mb)
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in records))
    write_json(os.path.join(run_dir, "status.json"),
               dict(status=status, epoch=len(records), step=None, message=f"{status} run"))
    write_json(os.path.join(run_dir, "provenance.json"), provenance or dict(
        git_commit="abc1234def", torch_version="2.13.0", device="cpu", device_name="cpu", precision="fp32",
        params_learnable=1_234_567, params_frozen=31_000_000, embeddings=dict(path="e.npz", sha256="f" * 64)))
    if test_ppl is not None:
        for name_, value in (("test_ppl", test_ppl), ("test_loss", math.log(test_ppl)), ("test_time", 1.5)):
            write_lines(os.path.join(run_dir, f"{name_}.txt"), [value])
        write_lines(os.path.join(run_dir, "avg_steady_state_memory.txt"), [steady_mb if steady_mb else "nan"])
    if samples:
        write_json(os.path.join(run_dir, "samples.json"), samples)
    return run_dir


def write_notebook_run(log_dir, name, args, valid_ppls, train_ppls, train_seconds, test_ppl, steady_mb):
    """An old course-notebook folder: args.json without "config" and one .txt per series."""
    run_dir = os.path.join(log_dir, name)
    os.makedirs(run_dir, exist_ok=True)
    write_json(os.path.join(run_dir, "args.json"), {k: v for k, v in args.items() if k != "config"})
    series = dict(train_ppl=train_ppls, valid_ppl=valid_ppls, train_time=train_seconds,
                  valid_time=[s / 10 for s in train_seconds],
                  train_loss=[math.log(t) for t in train_ppls], valid_loss=[math.log(v) for v in valid_ppls])
    for key, values in series.items():
        write_lines(os.path.join(run_dir, f"{key}.txt"), values)
    for key, value in (("test_ppl", test_ppl), ("test_loss", math.log(test_ppl)), ("test_time", 2.0),
                       ("avg_steady_state_memory", steady_mb)):
        write_lines(os.path.join(run_dir, f"{key}.txt"), [value])
    return run_dir


def decaying(start, end, n):
    """n values falling geometrically from start to end: a plausible learning curve."""
    return [start * (end / start) ** (i / max(n - 1, 1)) for i in range(n)]


def full_study(log_dir, epochs=10):
    """All 12 configurations completed, with SGD far worse (so curves span decades) and GPU memory."""
    for number, c in CONFIGS.items():
        base = {"adam": 150.0, "adamw": 145.0, "sgd": 2100.0, "momentum": 1600.0}[c.optimizer]
        base *= (1.0 if c.model == "lstm" else 0.9) * (1 + 0.05 * (c.layers - 1))
        valid = decaying(base * 8, base, epochs)
        train = [v * 0.9 for v in valid]
        seconds = [40.0 * c.layers + number] * epochs
        write_run(log_dir, str(number), config_args(number, epochs=epochs), valid, train, seconds,
                  test_ppl=valid[-1] * 1.05, steady_mb=4000.0 + 100 * number, peak_mb=5000.0 + 100 * number,
                  samples=[dict(prompt="the meaning of", text="life is a | sample")] if number == 1 else None)
