"""The subprocess side of bench/train_step.py: time one variant, or the matmul rate."""
import resource
import time

import torch

from utils.memory import peak_rss_mb
from utils.torch_utils import cpu_model_name


def run_worker(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker == "matmul":
        return {"fp32_gflops": matmul_gflops(torch.float32), "bf16_gflops": matmul_gflops(torch.bfloat16),
                "torch": torch.__version__, "cpu": cpu_model_name(), "threads": torch.get_num_threads()}
    from bench.common import random_batch
    from bench.step_variants import build, step_flops

    torch.manual_seed(0)
    step = build(args.worker, args.seq_len, args.layers, compile_features=args.compile)
    batch = random_batch(args.batch_size, args.seq_len)
    base_mb, reset = resident_mb(), reset_peak_rss()
    for _ in range(args.warmup):
        step(batch)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = step(batch)
        times.append(time.perf_counter() - start)
    if not torch.isfinite(loss.detach()):
        raise RuntimeError(f"{args.worker}: non-finite loss {loss.item()}")
    return {
        "step_seconds": times, "precision": getattr(step, "precision", "fp32"), "peak_mb": peak_rss_mb(), "base_mb": base_mb, "peak_reset": reset,
        "loss": float(loss), "step_flops": step_flops(args.worker, args.batch_size, args.seq_len, args.layers),
        "threads": torch.get_num_threads(),
    }


def matmul_gflops(dtype, rows=2048, inner=768, cols=8192, repeats=3):
    """Best rate of x @ w.T and w @ x.T for x (rows, inner), w (cols, inner): the classifier's
    shapes, scaled down, in both output layouts (MKL runs them at different speeds)."""
    if dtype != torch.float32:
        rows, cols = rows // 8, cols // 8  # emulated bf16 on AVX2 runs at a few % of fp32: keep it short
    x, w = torch.randn(rows, inner, dtype=dtype), torch.randn(cols, inner, dtype=dtype)
    best = float("inf")
    for product in (lambda: x @ w.t(), lambda: w @ x.t()):
        product()  # warm-up (thread pool, packing buffers)
        for _ in range(repeats):
            start = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - start)
    return 2 * rows * inner * cols / best / 1e9


def reset_peak_rss():
    """Reset this process's RSS high-water mark (Linux clear_refs '5'), so that ru_maxrss
    measures the steps, not model construction. False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def resident_mb():
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")
