"""The course's API over the engine: train(epoch, model, dataloader, optimizer, args),
evaluate(epoch, model, dataloader, args, mode) and main(args) -> the notebook's 10 values.

`args` may be this project's Arguments or the course notebook's own dataclass (which lacks the
extras: they take their defaults). The course functions train and evaluate in float32, as the
notebook's loop does; run_exp.py's runs use --precision.
"""
from utils.models.base import TokenNLL
from utils.runs import schema
from utils.train.loop import evaluate_split, train_epoch
from utils.train.precision import Precision
from utils.train.progress import Reporter
from utils.train.runner import execute
from utils.train.settings import apply_smoke, from_any


def _reporter(mode, epoch, dataloader, settings):
    total = len(dataloader) if settings.max_batches is None else min(len(dataloader), settings.max_batches)
    return Reporter(mode, total, epoch, settings.epochs, settings.print_every, settings.progress_bar)


def _fp32(model):
    return Precision("fp32", next(model.parameters()).device.type)


def train(epoch, model, dataloader, optimizer, args):
    """One epoch; returns EpochResult (mean NLL per token, perplexity, seconds)."""
    s = from_any(args)
    return train_epoch(TokenNLL(model), dataloader, optimizer, _fp32(model), epoch=epoch, max_steps=s.max_batches,
                       reporter=_reporter("train", epoch, dataloader, s))


def evaluate(epoch, model, dataloader, args, mode="val"):
    """Exact perplexity over the split (or its first max_batches batches); returns EpochResult."""
    s = from_any(args)
    return evaluate_split(TokenNLL(model), dataloader, _fp32(model), max_steps=s.max_batches,
                          reporter=_reporter(mode, epoch, dataloader, s))


def course_values(result):
    """A RunResult as the notebook's (train_losses, train_ppls, train_times, valid_losses, valid_ppls,
    valid_times, test_loss, test_ppl, test_time, avg_steady_state_memory): schema.TXT_LOGS's order, the
    one save_logs(args, *values) takes."""
    return (tuple([m[key] for m in result.epochs] for key in schema.EPOCH_TXT.values())
            + tuple(result.test[key] for key in schema.TEST_TXT.values()) + (result.avg_memory_mb,))


def main(args):
    """Train, validate each epoch, test; returns the notebook's 10 values (see course_values)."""
    return course_values(execute(apply_smoke(from_any(args))))
