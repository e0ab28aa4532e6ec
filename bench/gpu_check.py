"""The device check: on one GPU, in at most 8 minutes, one table of what must hold there (its rows and
options: docs/gpu.md#the-device-check).

    python -m bench.gpu_check            # on a CUDA machine
    python -m bench.gpu_check --dry      # the same code path on the CPU, tiny sizes (tests run it)

Seconds per epoch are EXTRAPOLATED from --steps timed steps. An error in a row (out of memory,
cuDNN, sync-debug) becomes its result; the table is printed and written to --out whatever happens.
"""
import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import torch

from bench.train_step import read_results, result_line

DEFAULT_OUT = os.path.join("bench", "results", "gpu_check.json")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAIN_ITEMS, VALID_ITEMS, TEST_ITEMS = 9205, 958, 1090  # Wikitext-2's items of 256 targets (utils.wikitext2)
TEST_LIMIT = 180  # seconds for the test phase, at most
EPOCHS = 10  # the study's epochs per configuration
# (compute capability floor, label, bf16/auto seconds per 1-layer epoch, study minutes) from issue 20.
TARGETS = (((8, 0), "A100/H100 class, auto (bf16)", 5.0, 12.0), ((0, 0), "T4 class, fp16", 25.0, 60.0))
FULL = dict(batch=16, seq_len=256, vocab=40479, width=768)
TINY = dict(batch=2, seq_len=16, vocab=500, width=48)
# The defaults of --steps, --warmup, --parallel and --budget on a GPU and dry (a longer budget: a busy CPU).
DEFAULTS = {False: dict(steps=20, warmup=3, parallel="2,4", budget=450.0),
            True: dict(steps=1, warmup=1, parallel="2", budget=1200.0)}
MODELS = ("lstm", "gpt1")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny sizes: the same code path, meaningless figures")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 20; 1 dry)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; 1 dry)")
    parser.add_argument("--parallel", default=None, help="numbers of runs sharing the GPU to time (default 2,4; 2 dry)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds; later sections are skipped past it (default 450; 1200 dry, on a busy CPU)")
    parser.add_argument("--embeddings", default=None, help="embeddings file for the run_exp.py rows (default: random)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one concurrent run
    parser.add_argument("--go", default=None, help=argparse.SUPPRESS)  # internal: the start barrier's folder
    args = parser.parse_args(argv)
    for name, value in DEFAULTS[args.dry].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def line_of(text, index=0, width=160):
    """One line of `text` (the first, or index -1: the last), at most `width` characters."""
    return (str(text).strip().splitlines() or [""])[index][:width]


class Check:
    """The sizes, device, clock, rows and record of one check."""

    def __init__(self, args):
        if not args.dry and not torch.cuda.is_available():
            raise SystemExit("error: no CUDA device here: run it on a GPU, or with --dry on a CPU.")
        self.args, self.dry, self.steps, self.warmup = args, args.dry, args.steps, args.warmup
        self.device = torch.device("cpu" if self.dry else "cuda")
        self.cuda = self.device.type == "cuda"
        self.sizes = TINY if self.dry else FULL
        # steps of an epoch's training and validation passes and of the test pass at these sizes
        self.epoch_steps = [-(-items // self.sizes["batch"]) for items in (TRAIN_ITEMS, VALID_ITEMS, TEST_ITEMS)]
        self.started = time.perf_counter()
        self.rows, self.record = [], {}

    def left(self):
        return self.args.budget - (time.perf_counter() - self.started)

    def precision(self, name):
        """The precision a run would get; fp16 on the CPU only in dry mode (resolve() refuses it there)."""
        from utils.train.precision import Precision

        if self.dry and name == "fp16":
            return Precision("fp16", "cpu", "dry run: fp16 autocast on the CPU")
        chosen = Precision.resolve(name, self.device)
        chosen.configure()
        return chosen

    def row(self, check, value, target=""):
        self.rows.append((check, value, target))
        print(f"  {check}: {value}", flush=True)

    def guarded(self, label, work, *args):
        """work(self, *args), or a row saying what went wrong: one failing row never ends the check."""
        try:
            return work(self, *args)
        except Exception as err:  # noqa: BLE001  out of memory, a cuDNN error, the sync-debug mode...
            line = f"{type(err).__name__}: " + line_of(err)
            self.row(label, "error: " + line)
            self.record.setdefault("errors", {})[label] = line
            self.free()
            return None

    def free(self):
        if self.cuda:
            torch.cuda.empty_cache()

    def synchronize(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)


# ----------------------------------------------------------------------------- the pieces
class Training:
    """A model's TokenNLL, optimizer, precision, scaler and batches as a run (and --compile) builds them."""

    def __init__(self, check, model, layers, precision_name, compile=False, seed=0):
        from bench.common import RandomItems, project_model, training_parts
        from utils.data.batches import TensorBatches

        s = check.sizes
        network = project_model(model, layers, s["seq_len"], seed, check.device, s["vocab"], s["width"])
        if compile:
            network.sequence_features = torch.compile(network.sequence_features)
        self.precision = check.precision(precision_name)
        fused = True if check.dry else None  # dry: the optimizer CUDA gets
        self.nll, self.optimizer, self.scaler = training_parts(network, self.precision, fused=fused)
        items = RandomItems(s["batch"] * (check.warmup + check.steps + 1), s["seq_len"], s["vocab"], seed)
        self.batches = TensorBatches(items, s["batch"], shuffle=True, seed=seed, device=check.device)

    def train(self, start, stop, on_step=None):
        """run_exp.train over steps start..stop of the epoch: its EpochResult (loss, ppl, seconds)."""
        from bench.common import loop_train

        return loop_train(self.nll, self.batches, self.optimizer, self.precision, self.scaler, start, stop, on_step)

    def validate(self, stop):
        """run_exp.evaluate over the first `stop` batches: its EpochResult."""
        import run_exp
        from bench.common import loop_run

        run = loop_run(self.nll, self.optimizer, self.precision, self.scaler, stop=stop)
        return run_exp.evaluate(0, self.nll.model, self.batches, run.settings, "valid", run)


def run_tests(check):
    """The CUDA-capable tests on the device (dry: the capability tests on the CPU), bounded in time."""
    label = "tests/test_gpu_paths.py on " + str(check.device)

    def result(returncode, summary):
        check.record["tests"] = {"returncode": returncode, "summary": summary}
        check.row(label, summary, "all pass")

    if importlib.util.find_spec("pytest") is None:
        return result(None, "skipped: pytest is not installed (pip install pytest)")
    env = dict(os.environ, LM_TEST_DEVICE=str(check.device))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu_paths.py",
               "-k", "PrecisionByCapability" if check.dry else "not GpuCheckDryRun"]  # never itself again
    limit = max(30.0, min(TEST_LIMIT, check.left() - 300))
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return result(None, f"timed out after {limit:.0f} s")
    result(done.returncode, line_of(done.stdout, -1, None) or "no output")
    if done.returncode:
        print(done.stdout[-3000:] + done.stderr[-2000:], file=sys.stderr)


def quiet_steps(check, model):
    """Would-synchronise calls (0 expected) of train steps 2..n under sync debug "error" and the counter."""
    from bench.host_syncs import count_host_syncs, cuda_branches, set_sync_debug

    training, steps, seen, error = Training(check, model, 1, "auto"), check.warmup + check.steps, {}, None

    def hook(step):  # steps 2..steps run inside the strict window
        if step == 1:
            set_sync_debug(check.device, "error")
            seen["start"] = counter.calls
        if step == steps:
            set_sync_debug(check.device, "default")
            seen["end"] = counter.calls

    with cuda_branches(), count_host_syncs() as counter:
        try:
            # one step more: the pass's last step reads its values (a printing line), after the window
            training.train(0, steps + 1, on_step=hook)
        except RuntimeError as err:  # what set_sync_debug_mode("error") raises on a synchronisation
            error = line_of(err, width=200) or "RuntimeError"
        finally:
            set_sync_debug(check.device, "default")
    calls = seen.get("end", counter.calls) - seen.get("start", 0)
    check.record.setdefault("quiet_step_syncs", {})[model] = {"calls": calls, "where": counter.where[:5],
                                                              "error": error}
    check.row(f"{model}: host syncs in {steps - 1} quiet steps ({training.precision})", error or str(calls), "0")
    return calls + (error is not None)


def time_epoch(check, model, layers, precision_name, compile=False):
    """Seconds per epoch (train + validation), extrapolated from timed steps; peak memory."""
    training = Training(check, model, layers, precision_name, compile)
    train_steps, valid_steps, test_steps = check.epoch_steps
    training.batches.set_epoch(0)
    training.train(0, check.warmup)  # warm-up
    if check.cuda:
        torch.cuda.reset_peak_memory_stats(check.device)
    train = training.train(check.warmup, check.warmup + check.steps)  # its time is taken after a synchronisation
    valid = training.validate(check.steps)
    train_step, valid_step = train[2] / check.steps, valid[2] / check.steps
    peak = torch.cuda.max_memory_allocated(check.device) / 2**20 if check.cuda else None
    result = {"model": model, "layers": layers, "precision": str(training.precision), "train_step_s": train_step,
              "valid_step_s": valid_step, "epoch_s": train_steps * train_step + valid_steps * valid_step,
              "test_pass_s": test_steps * valid_step, "peak_memory_mb": peak, "train_loss": train[0],
              "compile": compile}
    del training
    check.free()
    return result


def bandwidth(check, repeats=5):
    """GB/s of the best of `repeats` copies of 1 GiB (1 MiB dry), read and written."""
    source = torch.empty(2**28 if not check.dry else 2**18, device=check.device)
    target, best = torch.empty_like(source), math.inf
    for _ in range(repeats + 1):
        check.synchronize()
        start = time.perf_counter()
        target.copy_(source)
        check.synchronize()
        best = min(best, time.perf_counter() - start)
    rate = 2 * source.numel() * source.element_size() / best / 1e9
    check.record["bandwidth_gb_s"] = rate
    check.row("memory bandwidth (1 GiB copy)", f"{rate:,.3g} GB/s")


def resumed_run(check, first_device):
    """run_exp.py on first_device, killed after its first checkpoint, then rerun on the device: the
    rerun must finish and record that it resumed."""
    from utils.runs.schema import CHECKPOINT

    label = f"run_exp.py killed after a checkpoint on {first_device}, rerun on {check.device}"
    steps, batch = (4, 2) if check.dry else (40, 16)
    with tempfile.TemporaryDirectory() as folder:
        run_dir = os.path.join(folder, "resume")
        command = [sys.executable, "run_exp.py", "--model", "gpt1", "--epochs", "1", "--max_batches", str(steps),
                   "--checkpoint_every", str(steps // 2), "--batch_size", str(batch), "--log_dir", folder, "--exp_id",
                   "resume", "--embeddings", check.args.embeddings or _tiny_embeddings(folder)]
        first = subprocess.Popen(command + ["--device", first_device], cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        deadline = time.perf_counter() + (600.0 if check.dry else min(120.0, max(check.left() - 120, 30.0)))
        checkpointed = lambda: os.path.exists(os.path.join(run_dir, CHECKPOINT))  # noqa: E731
        while first.poll() is None and not checkpointed() and time.perf_counter() < deadline:
            time.sleep(0.05)
        first.kill()  # SIGKILL: the run gets no chance to save anything more
        first.wait()
        if not checkpointed():
            return check.row(label, "failed: no checkpoint before the kill: " + first.stderr.read()[-200:].strip())
        second = subprocess.run(command + ["--device", str(check.device)], cwd=ROOT, capture_output=True, text=True,
                                timeout=max(deadline - time.perf_counter(), 600.0 if check.dry else 60.0))
        with open(os.path.join(run_dir, "provenance.json")) as handle:
            resumes = json.load(handle).get("resumes", [])
    ok = second.returncode == 0 and resumes
    check.record.setdefault("resumed", {})[first_device] = {"returncode": second.returncode, "resumes": len(resumes)}
    failed = f"failed (exit {second.returncode}): {line_of(second.stderr, -1)}"
    check.row(label, "continued and finished" if ok else failed, "continues")


def _tiny_embeddings(folder):
    """An embeddings file of the data's vocabulary, 24 wide, for --dry and where none is given."""
    import numpy as np

    path = os.path.join(folder, "embeddings.npz")
    generator = np.random.default_rng(0)
    np.savez(path, tokens=generator.normal(0, 0.15, (FULL["vocab"], 24)).astype(np.float32),
             position=generator.normal(0, 0.15, (512, 24)).astype(np.float32))
    return path


# ----------------------------------------------------------------------------- several runs at once
def worker(args):
    """One of K concurrent runs: x1 training steps of the model args.worker names; prints its seconds per step."""
    check = Check(args)
    training = Training(check, args.worker, 1, "auto")
    training.train(0, check.warmup)
    open(os.path.join(args.go, f"ready-{os.getpid()}"), "w").close()
    while not os.path.exists(os.path.join(args.go, "go")):
        time.sleep(0.01)
    seconds = training.train(check.warmup, check.warmup + check.steps)[2]
    print(result_line({"step_s": seconds / check.steps}), flush=True)
    return 0


def concurrent_step_seconds(check, k, model):
    """Mean seconds per step of each of k runs of `model` x1 training at once, or None on failure."""
    with tempfile.TemporaryDirectory() as go:
        command = [sys.executable, "-m", "bench.gpu_check", "--worker", model, "--go", go, "--steps",
                   str(check.steps), "--warmup", str(check.warmup)] + ["--dry"] * check.dry
        procs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(k)]
        deadline = time.perf_counter() + max(check.left(), 60)
        while sum(name.startswith("ready-") for name in os.listdir(go)) < k:
            if time.perf_counter() > deadline or any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
        open(os.path.join(go, "go"), "w").close()
        try:
            outputs = [p.communicate(timeout=max(deadline - time.perf_counter(), 10)) for p in procs]
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            print(f"{k} concurrent runs did not finish in the time budget", file=sys.stderr)
            return None
    steps = [r["step_s"] for out, _ in outputs for r in read_results(out)]
    if len(steps) < k:
        print(f"{k} concurrent runs failed: {outputs[0][1][-1500:]}", file=sys.stderr)
        return None
    return sum(steps) / k


# ----------------------------------------------------------------------------- the whole check
def study_seconds(epochs, speedup=None):
    """The 12 x 10-epoch study from timed epochs (auto) and test passes, over the GPU-sharing gain."""
    from utils.study.configs import CONFIGS

    by = {(e["model"], e["layers"]): e for e in epochs}
    return sum((EPOCHS * by[(c.model, c.layers)]["epoch_s"] + by[(c.model, c.layers)]["test_pass_s"])
               / (speedup or {}).get(c.model, 1.0) for c in CONFIGS.values())


def run(check):
    name = "CPU (dry run)" if check.dry else torch.cuda.get_device_name(check.device)
    print(f"gpu_check on {name}, torch {torch.__version__}, budget {check.left():.0f}s", flush=True)
    check.record.update(device=name, torch=torch.__version__, dry=check.dry, sizes=check.sizes,
                        steps=check.steps, warmup=check.warmup, date=time.strftime("%Y-%m-%d"))
    capability = None if check.dry else torch.cuda.get_device_capability(check.device)
    target = None if check.dry else next(t for t in TARGETS if capability >= t[0])
    check.guarded("tests", run_tests)
    for model in MODELS:
        check.guarded(f"{model}: host syncs in quiet steps", quiet_steps, model)
    for first in ("cuda", "cpu") if not check.dry else ("cpu",):
        check.guarded(f"run_exp.py resumed from {first}", resumed_run, first)
    check.guarded("memory bandwidth", bandwidth)
    plan = [(m, n, "auto", False) for n in (1, 2, 4) for m in MODELS]
    if check.precision("auto").name != "fp16":  # on a T4, auto is fp16 already
        plan += [(m, n, "fp16", False) for n in (1, 4) for m in MODELS]
    plan += [(m, 1, "auto", True) for m in MODELS]
    epochs = check.record["epochs"] = []
    for model, layers, precision, compiled in plan:
        label = f"{model} x{layers} {precision}" + (" --compile" if compiled else "")
        if check.left() < 60:
            check.row(label, "skipped: time budget")
            continue
        result = check.guarded(label, time_epoch, model, layers, precision, compiled)
        if result is None:
            continue
        epochs.append(dict(result, asked=precision))
        goal = f"<= {target[2]:.0f} s" if target and layers == 1 and precision == "auto" else ""
        peak = "" if result["peak_memory_mb"] is None else f", peak {result['peak_memory_mb']:,.0f} MB"
        check.row(f"{label} ({result['precision']}): s/epoch", f"{result['epoch_s']:.1f}{peak}", goal)
    autos = [e for e in epochs if e["asked"] == "auto" and not e["compile"]]
    if len(autos) == 6:
        study(check, autos, target)
    return check


def study(check, autos, target):
    alone = check.record["study_s_one_at_a_time"] = study_seconds(autos)
    goal = f"<= {target[3]:.0f} min" if target else ""
    check.row("12 x 10 study, one run at a time (extrapolated)", f"{alone / 60:.1f} min", goal)
    for k in (int(v) for v in check.args.parallel.split(",") if v):
        gains = {}
        for model in MODELS:
            if check.left() < 60:
                break
            single = next(e["train_step_s"] for e in autos if e["model"] == model and e["layers"] == 1)
            shared = check.guarded(f"{model}: {k} runs sharing the GPU", concurrent_step_seconds, k, model)
            if shared is not None:
                gains[model] = k * single / shared
        label = f"12 x 10 study, {k} runs sharing the GPU (--max_parallel {k})"
        if len(gains) < 2:
            check.row(label, "skipped or failed (time budget, or see stderr)", goal)
            continue
        check.record.setdefault("shared", {})[k] = {"speedup": gains}
        gain_text = ", ".join(f"{m} x{g:.2f}" for m, g in gains.items())
        check.row(label, f"{study_seconds(autos, gains) / 60:.1f} min (throughput {gain_text})", goal)


def table(check):
    lines = ["| check | result | target |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in check.rows]
    note = (f"Seconds per epoch are extrapolated from {check.steps} timed steps (after {check.warmup}) to "
            f"{check.epoch_steps[0]} training + {check.epoch_steps[1]} validation steps of {check.sizes['batch']} x "
            f"{check.sizes['seq_len']}.")
    if check.dry:
        note += " DRY RUN: CPU, tiny sizes; the figures mean nothing."
    return "\n".join(lines) + "\n\n" + note


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    check = Check(args)
    try:
        run(check)
    finally:  # the table, whatever happened
        text = table(check)
        print("\n" + text, flush=True)
        from utils.runs.atomic import atomic_write_json

        atomic_write_json(args.out, dict(check.record, table=text))
    tests = check.record.get("tests", {}).get("returncode")
    syncs = check.record.get("quiet_step_syncs", {}).values()
    failed = tests not in (0, None) or check.record.get("errors") or any(v["calls"] or v["error"] for v in syncs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
