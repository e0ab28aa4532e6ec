"""What changes when a run continues, and how it is recorded: the gradient scaler where the
precision changed (another device under --precision auto), and provenance.json, which keeps
its first attempt's record and appends one per resume (never overwritten)."""
from utils.runs.provenance import device_name, provenance
from utils.runs.run_dir import describe_position


def restore_scaler(run, state):
    """The checkpoint's gradient-scaler state where it applies; a fresh scaler where the precision changed.

    Parameters and optimizer state are fp32 in every precision (autocast casts copies), so a run
    continues soundly in another precision; only the fp16 loss scale belongs to one precision.
    """
    # checkpoints before the precision was recorded: a non-empty scaler state means fp16
    saved = state.get("precision") or ("fp16" if state["scaler"] else "fp32 or bf16")
    now = run.precision.name
    if now == "fp16" and state["scaler"]:
        run.scaler.load_state_dict(state["scaler"])
    if saved == now:
        return
    fresh = now == "fp16" and not state["scaler"]
    run.resumed["precision_changed"] = {"checkpoint": saved, "now": now, "scaler": "fresh" if fresh else "none"}


def resume_notes(run):
    """One line per change since the checkpoint (none for a plain continuation)."""
    notes = []
    if "precision_changed" in run.resumed:
        change = run.resumed["precision_changed"]
        notes.append(f"Note: the checkpoint was trained in {change['checkpoint']}; this run continues in "
                     f"{change['now']} on {run.device}" + (" with a fresh gradient scaler" if change["scaler"] ==
                                                            "fresh" else "") + " (recorded in provenance.json).")
    if "code_changed" in run.resumed:
        change = run.resumed["code_changed"]
        notes.append(f"Note: the code changed since the checkpoint ({change['checkpoint']} -> {change['now']}); "
                     "recorded in provenance.json.")
    return notes


def resume_record(run):
    """provenance.json's entry for this attempt: where it continued and what differs from before."""
    at = run.position
    return dict({"at": describe_position(at.epoch, at.step, run.settings.epochs), "git_commit": run.commit,
                 "precision": str(run.precision), "device_name": device_name(run.device)}, **run.resumed)


def write_provenance(run, devices):
    """A new run's provenance; a continued run keeps its first attempt's record and appends this one."""
    s = run.settings
    fresh = provenance(s, run.model, run.device, run.precision, run.embeddings, run.dist, devices)
    fresh["git_commit"] = run.commit
    if run.plan.action != "resume":
        run.run_dir.write_provenance(fresh)
        return
    # provenance.json lost (or never written): rebuild it around the checkpoint's record of the first attempt
    record = run.run_dir.provenance() or dict(fresh, **run.origin)
    record["resumes"] = list(record.get("resumes", [])) + [resume_record(run)]
    run.run_dir.write_provenance(record)
