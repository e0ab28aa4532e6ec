"""Sample a continuation of a prompt from a trained run (`python generate.py --help`). A run that has not
completed still generates, from its last checkpoint, after one line on stderr naming its status and epoch."""
import argparse
import json
import os
import sys

import torch

from utils.data.tokenizer import GPT1Tokenizer
from utils.errors import UsageError
from utils.models.generation import generate
from utils.runs.checkpoint import CheckpointError, load_trained_model
from utils.runs.schema import CHECKPOINT, COMPLETED, STATUS
from utils.train.inputs import resolve_device


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Sample a continuation of a prompt from a trained run (LSTM or MiniGPT1).\n"
                    "Prints the (lower-cased, BPE-normalised) prompt followed by the sampled text; the same\n"
                    "seed gives the same text. Bad input prints one line on stderr and exits with code 2.",
        epilog="examples:\n"
               '  python generate.py --run logs/6 --prompt "the history of" --max_new_tokens 100 --seed 0\n'
               '  python generate.py --run logs/6 --prompt "the history of" --temperature 0   # greedy',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, metavar="FOLDER",
                        help="run folder holding checkpoint.pt, e.g. logs/<exp_id> (required)")
    parser.add_argument("--prompt", required=True, metavar="TEXT",
                        help="text to continue, lower-cased and BPE-encoded (required)")
    parser.add_argument("--max_new_tokens", type=int, default=100, metavar="N",
                        help="tokens to generate (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.8, metavar="X",
                        help="sampling temperature; 0: greedy (default: %(default)s)")
    parser.add_argument("--top_k", type=int, default=40, metavar="K",
                        help="sample among the k likeliest tokens; 0: all (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="same seed, same text (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--embeddings", default=None, metavar="PATH",
                        help="the embeddings file the run was trained on (default: the path the run recorded)")
    parser.add_argument("--bpe_folder", default=None, metavar="FOLDER",
                        help="GPT-1 BPE folder (default: $GPT1_BPE_FOLDER, else the project's data/gpt1_bpe)")
    return parser.parse_args(argv)


def prompt_ids(tokenizer, prompt):
    """The prompt's ids, refusing a prompt with no known token (nothing for the model to continue)."""
    if not prompt.strip():
        raise UsageError("The prompt is empty: pass some text with --prompt.")
    ids = tokenizer.encode(prompt)
    if all(i == tokenizer.unk_id for i in ids):
        raise UsageError(f"The prompt {prompt!r} encodes to no known GPT-1 token (only <unk> or nothing).")
    return ids


def unfinished_note(run_folder, settings):
    """One line naming the status and epoch of a run that has not completed (partly trained), else None."""
    try:
        with open(os.path.join(run_folder, STATUS)) as handle:
            status = json.load(handle)
    except (OSError, ValueError):
        return None  # not a folder training wrote (a hand-made checkpoint): nothing to say
    if status.get("status") == COMPLETED:
        return None
    epoch, step, epochs = status.get("epoch"), status.get("step"), settings.get("epochs")
    where = "" if epoch is None else f" at epoch {epoch}" + (
        f" of {epochs}" if epochs else "") + ("" if not step else f", step {step}")
    return (f"note: {run_folder} has not completed (status {status.get('status')}{where}): generating from its last "
            "checkpoint, a partly trained model; rerun its training command to finish it.")


def run(args):
    """The generated text (prompt included); raises UsageError on bad input."""
    if args.max_new_tokens < 0 or args.temperature < 0 or args.top_k < 0:
        raise UsageError("--max_new_tokens, --temperature and --top_k must be >= 0.")
    device = resolve_device(args.device, fallback=False)
    checkpoint = os.path.join(args.run, CHECKPOINT)
    if not os.path.isfile(checkpoint):
        raise UsageError(f"No checkpoint at {checkpoint}: pass a trained run folder with --run.")
    try:
        tokenizer = GPT1Tokenizer(args.bpe_folder)
    except FileNotFoundError as err:
        raise UsageError(str(err))
    ids = prompt_ids(tokenizer, args.prompt)
    try:
        model, settings = load_trained_model(args.run, device, args.embeddings)
    except CheckpointError as err:
        raise UsageError(f"Could not load {checkpoint}: {err}")
    note = unfinished_note(args.run, settings)
    if note:
        print(note, file=sys.stderr)
    generator = torch.Generator().manual_seed(args.seed)
    new_ids = generate(model, ids, args.max_new_tokens, args.temperature, args.top_k, generator)
    return tokenizer.decode(ids + new_ids)


def main(argv=None):
    args = parse_args(argv)
    try:
        print(run(args))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
