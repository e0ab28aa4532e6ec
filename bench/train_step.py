"""Time one training step of the project against a course-style step and Hugging Face's GPT
(docs/performance.md#the-per-step-benchmark).

    python -m bench.train_step [--steps 5 --warmup 2 --rounds 2 --batch_size 16 --seq_len 256
                                --out bench/results/train_step.json]

Each variant (bench/step_variants.py) runs in its own subprocess (its peak memory is its own),
interleaved round by round so that outside load spreads over all. This process never imports torch.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys

from utils.runs.atomic import atomic_write_json

DEFAULT_OUT = os.path.join("bench", "results", "train_step.json")
ALL_VARIANTS = ("lstm-project", "lstm-project-fp32", "lstm-course", "gpt1-project", "gpt1-project-fp32", "gpt1-course",
                "gpt1-hf")
# (numerator, denominator): (minimum speed ratio, maximum memory ratio) set by the issue, or None.
RATIOS = {("lstm-project", "lstm-course"): (2.5, 0.5), ("gpt1-project", "gpt1-course"): None,
          ("gpt1-project", "gpt1-hf"): (2.0, 0.5)}
SETUP_KEYS = ("steps", "warmup", "rounds", "batch_size", "seq_len", "layers", "compile")
RESULT_TAG = "RESULT "  # a worker's one line of JSON on stdout (bench/gpu_check.py's workers too)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (A B A B ...)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS), help="comma-separated subset")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each worker")
    parser.add_argument("--compile", action="store_true", help="torch.compile the project's model.features")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: run one variant
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        from bench.step_variants import run_worker

        print(result_line(run_worker(args)), flush=True)
        return 0
    variants = available_variants(args.variants)
    runs = {name: [] for name in ("matmul",) + variants}
    for round_index in range(args.rounds):
        for name in runs:
            print(f"round {round_index + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
            runs[name].append(spawn(name, args))
    summary = summarise(runs, args)
    print(format_table(summary))
    atomic_write_json(args.out, summary)
    print(f"\nwrote {args.out}")
    return 0


def available_variants(text):
    """The requested variants, minus the HF one where transformers is not installed."""
    variants = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in variants if v not in ALL_VARIANTS]
    if unknown:
        raise SystemExit(f"Unknown variant(s) {unknown}: choose from {', '.join(ALL_VARIANTS)}.")
    if "gpt1-hf" in variants and importlib.util.find_spec("transformers") is None:
        print("transformers is not installed: skipping gpt1-hf (pip install transformers).", file=sys.stderr)
        variants.remove("gpt1-hf")
    return tuple(variants)


def spawn(name, args):
    """Run one variant in a fresh interpreter; returns its result dict."""
    command = [sys.executable, "-m", "bench.train_step", "--worker", name] + ["--compile"] * args.compile
    for flag in ("steps", "warmup", "batch_size", "seq_len", "layers", "threads"):
        if getattr(args, flag) is not None:
            command += [f"--{flag}", str(getattr(args, flag))]
    done = subprocess.run(command, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          capture_output=True, text=True)
    for result in read_results(done.stdout):
        return result
    raise RuntimeError(f"{name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def summarise(runs, args):
    """Median step times, max peaks, and the step's matmul FLOPs as a share of the measured fp32 rate."""
    tokens = args.batch_size * args.seq_len
    matmul = runs.pop("matmul")
    fp32_peak = statistics.median(r["fp32_gflops"] for r in matmul)
    rows = {}
    for name, results in runs.items():
        times = [t for r in results for t in r["step_seconds"]]
        seconds, flops = statistics.median(times), results[0]["step_flops"]
        rows[name] = {
            "median_step_s": seconds, "tokens_per_s": tokens / seconds, "step_seconds": times,
            "peak_mb": max(r["peak_mb"] for r in results), "base_mb": min(r["base_mb"] for r in results),
            "step_gflop": flops / 1e9, "gflops": flops / seconds / 1e9,
            "fraction_of_fp32_matmul": flops / seconds / 1e9 / fp32_peak,
            "threads": results[0]["threads"], "peak_reset": all(r["peak_reset"] for r in results),
            "precision": results[0]["precision"],
        }
    return {
        "setup": {k: getattr(args, k) for k in SETUP_KEYS}
        | {"tokens_per_step": tokens, "torch": matmul[0]["torch"], "cpu": matmul[0]["cpu"], "device": "cpu",
           "threads": matmul[0]["threads"], "command": " ".join(["python -m bench.train_step"] + sys.argv[1:])},
        "matmul_gflops": {"fp32": fp32_peak, "bf16": statistics.median(r["bf16_gflops"] for r in matmul),
                          "per_round": matmul},
        "variants": rows, "ratios": ratios(rows),
    }


def ratios(rows):
    out = {}
    for (num, den), floor in RATIOS.items():
        if num not in rows or den not in rows:
            continue
        a, b = rows[num], rows[den]
        entry = out[f"{num} / {den}"] = {
            "speed": a["tokens_per_s"] / b["tokens_per_s"], "peak_memory": a["peak_mb"] / b["peak_mb"],
            "added_memory": (a["peak_mb"] - a["base_mb"]) / max(b["peak_mb"] - b["base_mb"], 1e-9)}
        if floor is not None:
            entry["floor"] = {"speed": floor[0], "peak_memory": floor[1],
                              "met": entry["speed"] >= floor[0] and entry["peak_memory"] <= floor[1]}
    return out


def format_table(summary):
    mm, setup = summary["matmul_gflops"], summary["setup"]
    lines = [
        f"matmul peak on this machine: fp32 {mm['fp32']:.1f} GFLOP/s, bf16 {mm['bf16']:.1f} GFLOP/s "
        f"(median of {len(mm['per_round'])} rounds); {setup['tokens_per_step']} tokens/step, "
        f"{setup['threads']} thread(s), torch {setup['torch']}",
        f"{'variant':<18}{'prec':>5}{'step s':>8}{'tokens/s':>10}{'peak MB':>9}{'+MB':>8}{'GFLOP':>8}{'GFLOP/s':>9}"
        f"{'% fp32 mm':>11}",
    ]
    for name, r in summary["variants"].items():
        lines.append(
            f"{name:<18}{r['precision']:>5}{r['median_step_s']:>8.2f}{r['tokens_per_s']:>10.0f}{r['peak_mb']:>9.0f}"
            f"{r['peak_mb'] - r['base_mb']:>8.0f}{r['step_gflop']:>8.0f}{r['gflops']:>9.1f}"
            f"{100 * r['fraction_of_fp32_matmul']:>10.0f}%")
    lines.append("(+MB: peak minus the resident memory just before the first step)")
    for key, r in summary["ratios"].items():
        floor = r.get("floor")
        verdict = "" if floor is None else (f"   floor >= {floor['speed']}x speed, <= {floor['peak_memory']}x memory: "
                                            + ("met" if floor["met"] else "NOT met"))
        lines.append(f"{key:<28} speed {r['speed']:.2f}x  peak memory {r['peak_memory']:.2f}x  "
                     f"added memory {r['added_memory']:.2f}x{verdict}")
    return "\n".join(lines)


def result_line(obj):
    return RESULT_TAG + json.dumps(obj)


def read_results(stdout):
    """The objects a worker printed with result_line."""
    return [json.loads(line[len(RESULT_TAG):]) for line in stdout.splitlines() if line.startswith(RESULT_TAG)]


if __name__ == "__main__":
    sys.exit(main())
