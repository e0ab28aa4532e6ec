"""Seconds per training epoch and peak memory of each of the study's 12 configurations.

    python -m bench.gpu_epoch_times                         # on a CUDA machine (not yet timed on a GPU)
    python -m bench.gpu_epoch_times --steps 1 --configs 1   # CPU smoke check

For each configuration (utils.study.configs.CONFIGS) it builds the model with random frozen
embeddings (bench/common.py; no data files: only the sizes matter), times `--steps` training
steps exactly as a run takes them (bench.common.project_step) after `--warmup`
untimed ones on random full-length batches (16 x 256), and EXTRAPOLATES seconds per epoch as the mean step time x 576
(ceil(9,205 training items / 16), the training split's steps per epoch). Peak CUDA memory
is torch.cuda.max_memory_allocated over the steps. Precision defaults to auto (bf16 on a
bf16 GPU). Validation passes are not included.
"""
import argparse
import os
import sys
import time

import torch

TRAIN_ITEMS = 9205  # Wikitext-2 training items of 256 targets (utils.wikitext2, break mode none)
DEFAULT_OUT = os.path.join("bench", "results", "gpu_epoch_times.json")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 on CUDA, 0 on CPU)")
    parser.add_argument("--configs", default="all", help='"all" or a list like 1,5-8')
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv=None):
    from utils.study.configs import CONFIGS, parse_config_list
    from utils.train.precision import Precision

    args = parse_args(argv)
    device = torch.device(args.device)
    if args.warmup is None:
        args.warmup = 5 if device.type == "cuda" else 0
    precision = str(Precision.resolve(args.precision, device))
    steps_per_epoch = -(-TRAIN_ITEMS // args.batch_size)
    rows = []
    for number in parse_config_list(args.configs):
        row = time_config(CONFIGS[number], args, device, precision)
        row["seconds_per_epoch_extrapolated"] = row["seconds_per_step"] * steps_per_epoch
        rows.append(row)
        print(format_row(row), flush=True)
    report = {
        "device": device_name(device), "torch": torch.__version__, "precision": precision,
        "batch_size": args.batch_size, "seq_len": args.seq_len, "steps": args.steps, "warmup": args.warmup,
        "steps_per_epoch": steps_per_epoch,
        "note": f"seconds per epoch are extrapolated: mean step time x {steps_per_epoch} steps; validation excluded",
        "configs": rows,
    }
    write_json(args.out, report)
    print(f"{report['note']}\nwrote {args.out}")
    return 0


def time_config(config, args, device, precision):
    """Build config's model and optimizer, run warm-up and timed steps; returns a result row."""
    from bench.common import project_model, project_step, random_batch

    model = project_model(config.model, config.layers, 256, seed=config.number, device=device)  # 256 positions
    step = project_step(model, config.optimizer, precision)
    batch = random_batch(args.batch_size, args.seq_len, seed=config.number, device=device, vocab=model.vocabulary_size)
    for _ in range(args.warmup):
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / args.steps
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    row = {
        "config": config.number, "label": config.label, "seconds_per_step": seconds,
        "tokens_per_s": args.batch_size * args.seq_len / seconds, "peak_memory_mb": peak,
        "final_loss": float(loss.detach()),
    }
    del model, step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def format_row(row):
    peak = "n/a" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:.0f} MB"
    return (f"{row['label']:<28} {row['seconds_per_step'] * 1000:8.1f} ms/step  "
            f"{row['tokens_per_s']:>10,.0f} tokens/s  ~{row['seconds_per_epoch_extrapolated']:7.1f} s/epoch  "
            f"peak {peak}")


def device_name(device):
    from utils.torch_utils import cpu_model_name

    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model_name()


def write_json(path, report):
    from bench.common import write_json as write

    write(path, report)


if __name__ == "__main__":
    sys.exit(main())
