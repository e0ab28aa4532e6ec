"""Stopping a run cleanly on a signal (docs/resilience.md): the handler only records it; at the next step
boundary the run checkpoints, then `finish()` hands the signal to its previous handler (submitit requeues
on USR2) and raises RunInterrupted. A signal ignored at the start (nohup's SIGHUP) stays so."""
import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGHUP)


class RunInterrupted(Exception):
    def __init__(self, signum, where):
        self.signum = signum
        super().__init__(f"{signal.Signals(signum).name} {where}")

    @property
    def exit_code(self):
        return 128 + int(self.signum)


def before_training(signum, frame):
    """The command line's handler until a run installs GracefulStop: stop like Ctrl-C."""
    raise RunInterrupted(signum, "before training started (nothing to save)")


@contextlib.contextmanager
def stopping_before_training():
    """While a command starts: SIGTERM, USR2 and HUP end it in one line (before_training), not silently."""
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in SIGNALS[1:]} if main else {}
    for signum, handler in previous.items():
        if handler == signal.SIG_DFL:
            signal.signal(signum, before_training)
    try:
        yield
    finally:  # a caller in the same process (a test, a notebook) gets its own handlers back
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


class GracefulStop:
    """Context manager installing the recording handlers (main thread only; elsewhere inert)."""

    def __init__(self):
        self.signum, self.previous = None, {}  # signum: the signal received (None: no stop requested)
        self.writing = False  # inside holding(): a second Ctrl-C waits for the write to end
        self.hurry = False  # a second Ctrl-C came while writing

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                if signal.getsignal(signum) != signal.SIG_IGN:
                    self.previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}
        return False

    def _record(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            if self.writing:  # a checkpoint cut in the middle would be lost: stop right after it
                self.hurry = True
                return
            raise KeyboardInterrupt  # pressed twice: the user does not want to wait
        self.signum = signum

    @contextlib.contextmanager
    def holding(self):
        """Writes that a second Ctrl-C must not cut (a checkpoint and the logs that go with it)."""
        outer, self.writing = self.writing, True
        try:
            yield
        finally:
            self.writing = outer
        if self.hurry and not outer:
            self.hurry = False
            raise KeyboardInterrupt

    def finish(self, where, signum=None):
        """After the state is saved: let the previous handler act (submitit's requeue), then stop.
        signum: the signal another process received (data-parallel runs)."""
        self.signum = self.signum or signum
        previous = self.previous.get(self.signum)
        if callable(previous) and previous not in (signal.default_int_handler, before_training):
            try:
                previous(self.signum, None)  # submitit's requeue ends the process here (SystemExit)
            except Exception as err:  # it could not requeue (too many timeouts, its scontrol killed):
                # the checkpoint is saved all the same, so this is an interruption, not a failed run
                raise RunInterrupted(self.signum, f"{where}; {type(err).__name__}: {err}") from err
        raise RunInterrupted(self.signum, where)
