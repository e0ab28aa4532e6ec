"""FLOPs and bytes per training and evaluation step of every study configuration on each GPU class,
from the CUDA dry run, and the roofline time per epoch and for the 12 x 10 study.

    python -m bench.roofline [--gpus T4,A100,H100] [--out bench/results/roofline.json]
    python -m bench.roofline --cpu      # also: the bf16 MiniGPT1 x1 step against the bf16 matmul rate

The dry run (tests/cuda_dry/harness.py) runs each configuration at 16 x 256, `--precision auto`
for that GPU. Roofline time = max(FLOPs / peak FLOP rate, bytes / peak bandwidth), published peaks
below: half FLOPs at the tensor-core rate, float32 ones at TF32's on sm_80+ (cuDNN's default), else
fp32's. A floor: no kernel reaches a peak, and the LSTM recurrence is 256 latency-bound steps.
"""
import argparse
import json
import os
import sys

# name: (dense half-precision tensor FLOP/s, TF32 FLOP/s or None, fp32 FLOP/s, bytes/s): datasheets
# (T4: 65 fp16 / 8.1 fp32 TFLOP/s, 320 GB/s; A100 SXM4 80GB: 312 / 156 / 19.5, 2,039 GB/s;
# H100 SXM5: 989 / 494 / 67, 3,350 GB/s).
PEAKS = {"T4": (65e12, None, 8.1e12, 320e9), "A100": (312e12, 156e12, 19.5e12, 2039e9),
         "H100": (989e12, 494e12, 67e12, 3350e9)}
TRAIN_STEPS, VALID_STEPS, TEST_STEPS = 576, 60, 69  # ceil(9,205 / 958 / 1,090 items of 256 targets / 16)
EPOCHS = 10
DEFAULT_OUT = os.path.join("bench", "results", "roofline.json")


def seconds(phase, gpu):
    """Roofline seconds of one logged step."""
    half, tf32, fp32, bandwidth = PEAKS[gpu]
    compute = phase["flops_half"] / half + phase["flops_fp32"] / (tf32 or fp32)
    return max(compute, phase["bytes"] / bandwidth)


def rows(records):
    from utils.study.configs import CONFIGS

    by = {(r["gpu"], r["model"], r["layers"], r["optimizer"]): r for r in records}
    out = []
    for gpu in sorted({r["gpu"] for r in records}, key=list(PEAKS).index):
        study = 0.0
        for c in CONFIGS.values():
            r = by[(gpu, c.model, c.layers, c.optimizer)]
            train, valid = r["phases"]["train2"], r["phases"]["eval1"]
            epoch = TRAIN_STEPS * seconds(train, gpu) + VALID_STEPS * seconds(valid, gpu)
            study += EPOCHS * epoch + TEST_STEPS * seconds(valid, gpu)
            out.append(dict(gpu=gpu, config=c.number, model=c.model, layers=c.layers, optimizer=c.optimizer,
                            precision=r["provenance"]["precision"], recurrence=r["provenance"]["recurrence_precision"],
                            train_gflop=train["flops"] / 1e9, train_gb=train["bytes"] / 1e9,
                            loss_gb=train["regions"]["loss"][0] / 1e9, eval_gflop=valid["flops"] / 1e9,
                            eval_gb=valid["bytes"] / 1e9, epoch_s=epoch))
        out.append(dict(gpu=gpu, config="study", study_min=study / 60))
    return out


def table(found):
    lines = ["| GPU | config | model | precision (recurrence) | train GFLOP | train GB (loss) | eval GFLOP | eval GB "
             "| roofline s/epoch |", "|---|---|---|---|---|---|---|---|---|"]
    for r in found:
        if r["config"] == "study":
            lines.append(f"| {r['gpu']} | 12 x 10 study | | | | | | | **{r['study_min']:.1f} min** |")
            continue
        lines.append(f"| {r['gpu']} | {r['config']} | {r['model']} x{r['layers']} {r['optimizer']} | {r['precision']}"
                     f" ({r['recurrence'] or '-'}) | {r['train_gflop']:.0f} | {r['train_gb']:.2f} ({r['loss_gb']:.2f})"
                     f" | {r['eval_gflop']:.0f} | {r['eval_gb']:.2f} | {r['epoch_s']:.1f} |")
    return "\n".join(lines)


def cpu_rate(repeats=3):
    """(bf16 MiniGPT1 x1 training step FLOP/s, bf16 matmul FLOP/s), interleaved in this process."""
    import time

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.common import project_model, project_step, random_batch

    step, batch = project_step(project_model("gpt1", 1, 256), precision="bf16"), random_batch(16, 256)
    with FlopCounterMode(display=False) as counter:
        step(batch)
    a, b = torch.randn(4096, 768).bfloat16(), torch.randn(768, 40479).bfloat16()  # the classifier's shape
    best = {"step": float("inf"), "mm": float("inf")}
    for _ in range(repeats):
        for name, work in (("step", lambda: step(batch)), ("mm", lambda: a @ b)):
            start = time.perf_counter()
            work()
            best[name] = min(best[name], time.perf_counter() - start)
    return counter.get_total_flops() / best["step"], 2 * a.shape[0] * a.shape[1] * b.shape[1] / best["mm"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", default=",".join(PEAKS), help="comma-separated subset of " + ", ".join(PEAKS))
    parser.add_argument("--cpu", action="store_true", help="also measure the CPU's bf16 step against its matmul")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    from tests.cuda_dry.harness import run_all
    from utils.study.configs import CONFIGS

    gpus = [g for g in args.gpus.split(",") if g]
    unknown = sorted(set(gpus) - set(PEAKS))
    if unknown:
        print(f"error: unknown GPU {', '.join(unknown)}: choose from {', '.join(PEAKS)}.", file=sys.stderr)
        return 2
    runs = [dict(gpu=g, model=c.model, layers=c.layers, optimizer=c.optimizer, resume=False, steps=2)
            for g in gpus for c in CONFIGS.values()]
    found = rows(run_all(runs, timeout=3600))
    text = table(found)
    record = {"rows": found, "table": text}
    if args.cpu:
        step, mm = cpu_rate()
        record["cpu"] = {"step_flops": step, "matmul_flops": mm}
        text += (f"\n\nCPU, bf16: MiniGPT1 x1 training step {step / 1e9:.0f} GFLOP/s, the classifier's matmul "
                 f"{mm / 1e9:.0f} GFLOP/s: {step / mm:.0%}")
    print(text)
    from utils.runs.atomic import atomic_write_json

    atomic_write_json(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
