"""The course's save_logs(args, *logs), writing the run folder's format (utils.runs.schema)."""
from utils.runs.run_dir import RunDir
from utils.runs.schema import TXT_LOGS


def save_logs(args, *logs):
    """save_logs(args, train_losses, train_ppls, train_times, valid_losses, valid_ppls, valid_times,
    test_loss, test_ppl, test_time, avg_steady_state_memory): the notebook's call, unchanged."""
    if len(logs) != len(TXT_LOGS):
        raise TypeError(f"save_logs expects args and {len(TXT_LOGS)} values ({', '.join(TXT_LOGS)}); got {len(logs)}.")
    run_dir = RunDir(args.log_dir, args.exp_id)
    run_dir.mark()
    run_dir.write_args(args)
    for name, values in zip(TXT_LOGS, logs):
        run_dir.write_txt(name, values)
