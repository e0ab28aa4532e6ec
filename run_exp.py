"""Train and evaluate an LSTM or MiniGPT1 on Wikitext-2; one run, one configuration, or all 12.

    python run_exp.py --model gpt1 --optimizer adamw          # one run, logs in logs/debug
    python run_exp.py --config 6                              # configuration 6 of the study
    python run_exp.py --config all --smoke                    # all 12, tiny budget (CPU check)
"""
import sys
import time

import torch
import torch.optim as optim

from utils.checkpoint import build_model
from utils.configs import CONFIGS, parse_config_list
from utils.data_utils import args_to_dict
from utils.embeddings import EmbeddingsError, read_embeddings
from utils.gpu_usage import get_gpu_memory_usage, peak_gpu_memory_mb
from utils.precision import make_scaler, resolve_precision
from utils.run_args import Arguments, UsageError, build_parser, get, resolve_data_folder, validate, with_smoke
from utils.run_logs import RunLog
from utils.run_provenance import provenance
from utils.torch_utils import rng_state, seed_experiment, set_rng_state
from utils.training import TrainingDiverged, evaluate, train
from utils.wikitext2 import Wikitext2
from utils.words import word_end_table
from utils.batches import TensorBatches

__all__ = ["Arguments", "main", "train", "evaluate", "run_config", "run_sweep", "TrainingDiverged"]


def resolve_device(requested):
    if str(requested).startswith("cuda") and not torch.cuda.is_available():
        print("Note: CUDA is not available; running on the CPU.")
        return torch.device("cpu")
    return torch.device(requested)


def make_optimizer(args, model):
    """The course's four optimizers, over learnable parameters only (frozen embeddings get no state)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "adamw":
        return optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "adam":
        return optim.Adam(params, lr=args.lr)
    if args.optimizer == "sgd":
        return optim.SGD(params, lr=args.lr, weight_decay=args.weight_decay)
    return optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def load_inputs(args):
    """Splits and embedding weights, checked before anything is written."""
    folder = resolve_data_folder(args.data_folder)
    splits = {name: Wikitext2(folder, split=name) for name in ("train", "validation", "test")}
    try:
        tokens, position = read_embeddings(args.embeddings)
    except EmbeddingsError as err:
        raise UsageError(str(err)) from None
    max_id = max(int(ds.tokens.max()) for ds in splits.values())
    if max_id >= tokens.shape[0]:
        raise UsageError(f"{args.embeddings} has {tokens.shape[0]} token rows but the data uses ids up to {max_id}.")
    if args.model == "gpt1" and (position.shape[0] < 256 or tokens.shape[1] % 12):
        raise UsageError(f"{args.embeddings}: MiniGPT1 needs >= 256 positions and a width divisible by 12 heads "
                         f"(got position {tuple(position.shape)}, width {tokens.shape[1]}).")
    return splits, tokens, position[:256].clone()


def _batches(splits, args, device):
    return {
        "train": TensorBatches(splits["train"], args.batch_size, shuffle=True, seed=args.seed, device=device),
        "validation": TensorBatches(splits["validation"], args.batch_size, device=device),
        "test": TensorBatches(splits["test"], args.batch_size, device=device),
    }


def _word_table(args, device):
    """Which token ids end a word, for word-level perplexity; None (with a notice) without the BPE files."""
    try:
        return word_end_table(get(args, "vocab_folder")).to(device)
    except (OSError, ValueError) as err:
        print(f"Note: no word-level perplexity ({err}).")
        return None


def _epoch_record(epoch, tr, va, optimizer, peak):
    return {
        "epoch": epoch + 1, "train_loss": tr[0], "train_ppl": tr[1], "train_seconds": tr[2],
        "valid_loss": va[0], "valid_ppl": va[1], "valid_seconds": va[2],
        "train_tokens": tr.tokens, "valid_tokens": va.tokens, "valid_words": va.words,
        "valid_word_ppl": va.word_perplexity, "train_tokens_per_s": tr.tokens_per_second,
        "lr": optimizer.param_groups[0]["lr"], "peak_memory_mb": peak,
    }


def main(args):
    """Train, validate each epoch, test; returns the notebook's 10 values:
    (train_losses, train_ppls, train_times, valid_losses, valid_ppls, valid_times,
     test_loss, test_ppl, test_time, avg_steady_state_memory)."""
    with_smoke(args)
    validate(args)
    device = resolve_device(args.device)
    precision = resolve_precision(get(args, "precision"), device)
    run_log = RunLog(args.log_dir, args.exp_id, enabled=args.log)
    resume, force = bool(get(args, "resume")), bool(get(args, "force"))
    run_log.check(resume, force)
    splits, tokens, position = load_inputs(args)

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    seed_experiment(args.seed)
    model = build_model({"model": args.model, "layers": args.layers}, tokens, position).to(device)
    if get(args, "compile"):
        # The loss calls model.features, not forward: compile that (measured on CPU: slower, so off by default).
        model.features = torch.compile(model.features)
    optimizer = make_optimizer(args, model)
    args._precision, args._scaler = precision, make_scaler(precision, device)
    args._word_table = _word_table(args, device)
    batches = _batches(splits, args, device)

    metrics, memories, first_epoch = [], [], 0
    if resume and run_log.has_checkpoint():
        state = run_log.load_checkpoint(device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        args._scaler.load_state_dict(state["scaler"])
        metrics, memories, first_epoch = state["metrics"], state["memories"], state["epoch"]
        set_rng_state(state["rng"])
        print(f"Resuming {run_log.path} after epoch {first_epoch}.")
    else:
        run_log.start(force)
    run_log.write_provenance(provenance(args, model, device, precision))
    print(f"{args.model.upper()} x{args.layers} on {device} ({precision}): "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} learnable parameters.")

    epoch = first_epoch
    for epoch in range(first_epoch, args.epochs):
        run_log.write_status("running", epoch)
        mem_before, _ = get_gpu_memory_usage(), peak_gpu_memory_mb(reset=True)
        batches["train"].set_epoch(epoch)
        try:
            tr = train(epoch, model, batches["train"], optimizer, args)
        except TrainingDiverged as err:
            run_log.write_status("diverged", err.epoch, err.step, str(err))
            raise
        va = evaluate(epoch, model, batches["validation"], args)
        memories.append((mem_before + get_gpu_memory_usage()) / 2)
        metrics.append(_epoch_record(epoch, tr, va, optimizer, peak_gpu_memory_mb()))
        print(f"epoch {epoch + 1}/{args.epochs}: train ppl {tr[1]:.2f}, valid ppl {va[1]:.2f} "
              f"({tr[2]:.0f}s, {tr.tokens_per_second:,.0f} tokens/s)", flush=True)
        run_log.save_checkpoint({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": args._scaler.state_dict(),
            "args": args_to_dict(args), "epoch": epoch + 1, "rng": rng_state(), "metrics": metrics, "memories": memories,
        })
        run_log.write_epochs(args, metrics)

    te = evaluate(epoch, model, batches["test"], args, mode="test")
    avg_memory = sum(memories) / len(memories) if memories else float("nan")
    results = ([m["train_loss"] for m in metrics], [m["train_ppl"] for m in metrics],
               [m["train_seconds"] for m in metrics], [m["valid_loss"] for m in metrics],
               [m["valid_ppl"] for m in metrics], [m["valid_seconds"] for m in metrics],
               te[0], te[1], te[2], avg_memory)
    run_log.write_final(args, results, {"test_loss": te[0], "test_ppl": te[1], "test_seconds": te[2],
                                        "test_tokens": te.tokens, "test_words": te.words,
                                        "test_word_ppl": te.word_perplexity})
    run_log.write_status("completed", args.epochs, message=f"test ppl {te[1]:.3f}")
    print(f"===== Best validation perplexity: {min(results[4]):.3f}; test perplexity {te[1]:.3f} =====")
    return results


# A completed run counts as done only if it was run with these settings.
SAME_RUN_FIELDS = ("model", "layers", "optimizer", "epochs", "batch_size", "max_batches", "lr", "seed")


def config_args(number, **overrides):
    """Arguments for configuration `number`, named after it, with `overrides` on top."""
    cfg = CONFIGS[number]
    fields = dict(model=cfg.model, layers=cfg.layers, optimizer=cfg.optimizer, batch_size=cfg.batch_size,
                  epochs=cfg.epochs, exp_id=cfg.exp_id, config=number)
    fields.update(overrides)
    return with_smoke(Arguments(**fields))


def run_config(number, **overrides):
    """Run configuration `number` unless already complete; resume it if it was interrupted.
    Returns a summary dict; never raises for a failed or diverged run."""
    args = config_args(number, **overrides)
    run_log = RunLog(args.log_dir, args.exp_id, enabled=args.log)
    summary = {"config": number, "label": CONFIGS[number].label, "exp_id": args.exp_id}
    if (run_log.is_completed() or run_log.has_checkpoint()) and not args.force:
        differs = run_log.settings_differ(args, SAME_RUN_FIELDS)
        if differs:  # e.g. a smoke run where a full run is asked for: never overwrite or mix silently
            return dict(summary, status="conflict", message=f"{run_log.path} was run with other {', '.join(differs)}: "
                        "pass --force to overwrite or use another --log_dir")
        if run_log.is_completed():
            return dict(summary, status="skipped", message="already complete")
    args.resume = args.resume or run_log.has_checkpoint()
    start = time.perf_counter()
    try:
        results = main(args)
    except TrainingDiverged as err:
        return dict(summary, status="diverged", message=str(err), seconds=time.perf_counter() - start)
    except Exception as err:  # keep the sweep going; the run's folder says what happened
        run_log.write_status("failed", None, message=f"{type(err).__name__}: {err}")
        return dict(summary, status="failed", message=f"{type(err).__name__}: {err}",
                    seconds=time.perf_counter() - start)
    return dict(summary, status="completed", best_valid_ppl=min(results[4]), test_ppl=results[7],
                seconds=time.perf_counter() - start, message="")


def run_sweep(numbers, **overrides):
    """Run several configurations in order, skipping completed ones and going on past failures."""
    summaries = [run_config(n, **overrides) for n in numbers]
    print(format_summary(summaries))
    return summaries


def format_summary(summaries):
    lines = [f"{'config':<24} {'status':<10} {'best valid ppl':>14} {'test ppl':>10} {'minutes':>8}  note"]
    for s in summaries:
        best = f"{s['best_valid_ppl']:.2f}" if "best_valid_ppl" in s else "-"
        test = f"{s['test_ppl']:.2f}" if "test_ppl" in s else "-"
        minutes = f"{s['seconds'] / 60:.1f}" if "seconds" in s else "-"
        lines.append(f"{s['label']:<24} {s['status']:<10} {best:>14} {test:>10} {minutes:>8}  {s['message'][:60]}")
    return "\n".join(lines)


def cli(argv=None):
    parser = build_parser()
    namespace = parser.parse_args(argv)
    # Only flags the user changed override a configuration's own settings.
    given = {k: v for k, v in vars(namespace).items() if k != "config" and v != parser.get_default(k)}
    try:
        if namespace.config is None:
            main(Arguments(**{k: v for k, v in vars(namespace).items() if k != "config"}))
            return 0
        numbers = parse_config_list(namespace.config)
        clash = sorted(set(given) & {"model", "layers", "optimizer"})
        if clash:
            raise UsageError(f"--config sets {', '.join(clash)}; drop --{clash[0]} or run without --config.")
        if "exp_id" in given and len(numbers) > 1:
            raise UsageError("--exp_id names one run; with several configurations each is named after its number.")
        summaries = run_sweep(numbers, **given)
    except (UsageError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"diverged: {err}", file=sys.stderr)
        return 1
    return 0 if all(s["status"] in ("completed", "skipped") for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(cli())
