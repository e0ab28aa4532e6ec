"""Is training still learning? A non-finite loss, or a stall (see STALL_STEPS), counted on the device and
read only at the steps that print and at the end of a pass (one host sync)."""
import torch

# Steps in a row after which a run is stalled: all skipped by the fp16 scaler (2^-100 of the scale left)
# or all with bit for bit the same loss. A healthy run does neither for even a few steps.
STALL_STEPS = 100


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, or training stalled (`reason`), at `epoch` and `step`."""

    def __init__(self, epoch, step, reason=None):
        # epoch and step are 0-based in the program and counted from 1 in what the user reads
        where = f"epoch {epoch + 1}, step {step + 1}"
        super().__init__(f"Training stalled at {where}: {reason}" if reason else
                         f"Loss became non-finite at {where}: lower --lr or try another optimizer.")
        self.epoch, self.step = epoch, step


class StallWatch:
    """The first non-finite step, and the longest runs of scaler-skipped and of unchanged-loss steps."""

    def __init__(self, device, limit=STALL_STEPS):
        self.limit = limit
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)  # first non-finite step
        self.skipped = torch.zeros((), dtype=torch.long, device=device)  # scaler-skipped steps in a row
        self.unchanged = torch.zeros((), dtype=torch.long, device=device)  # steps in a row with the same loss
        self.worst = torch.zeros(2, dtype=torch.long, device=device)  # the longest of each run so far
        self.last_loss = self.last_scale = None

    @torch.no_grad()
    def add(self, loss, step, scaler=None):
        loss = loss.detach()
        self.bad_step = torch.where((self.bad_step < 0) & ~torch.isfinite(loss), step, self.bad_step)
        if self.last_loss is not None:
            self.unchanged = torch.where(loss == self.last_loss, self.unchanged + 1, 0)
        self.last_loss = loss.clone()
        # the scale on the device (get_scale() would wait for it), set by scale(), changed in place by update()
        scale = scaler._scale if scaler is not None and scaler.is_enabled() else None
        if scale is not None:
            if self.last_scale is not None:  # update() halves the scale exactly when it skipped the step
                self.skipped = torch.where(scale < self.last_scale, self.skipped + 1, 0)
            self.last_scale = scale.clone()
        self.worst = torch.maximum(self.worst, torch.stack([self.skipped, self.unchanged]))

    def check(self, epoch, done):
        """TrainingDiverged when a loss was not finite or a stall reached the limit (`done` steps so far)."""
        step = int(self.bad_step.item())
        if step >= 0:
            raise TrainingDiverged(epoch, step)
        skipped, unchanged = self.worst.tolist()
        if skipped >= self.limit:
            raise TrainingDiverged(epoch, done - 1, f"the fp16 gradient scaler skipped {skipped} steps in a row (the "
                                   "gradients overflow fp16), so nothing is learned: rerun with --precision bf16 (on "
                                   "an sm_80+ GPU) or --precision fp32.")
        if unchanged >= self.limit:
            raise TrainingDiverged(epoch, done - 1, f"the loss stayed exactly the same for {unchanged} steps in a "
                                   "row, so nothing is learned: rerun with --precision bf16 or --precision fp32, or "
                                   "another --lr.")
