"""Atomic files: write to a temporary file beside the target, fsync, rename. A crash or a kill
leaves either the old file or the new one, never half of one; a kill mid-write can leave a
temporary file, named TMP_PREFIX + 8 characters + the target's name, which the next run of that
folder removes (remove_leftovers)."""
import errno
import json
import os
import re
import tempfile

TMP_PREFIX = ".tmp-"
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class WriteError(OSError):
    """A file could not be written (a full disk, a read-only file system...); one line says which and why.
    The file it was to replace is intact."""

    def __str__(self):
        return self.strerror


def fault_point(point, path):
    """Where a write can be cut ("begin", "written": the temporary file complete, "replaced"): the
    fault-injection tests replace this function; it does nothing."""


def atomic_write(path, write):
    """Call write(file_object) on a temporary file beside `path`, then rename it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fault_point("begin", path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=os.path.basename(path))
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        with os.fdopen(fd, "wb") as raw:
            handle = _Recorder(raw, path)
            try:
                write(handle)
            except Exception:  # a writer (torch.save) can turn the OSError into its own error
                if handle.error is not None:
                    raise handle.error from None
                raise
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
        fault_point("written", path)
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise _write_error(path, err) from None
        raise
    fault_point("replaced", path)


class _Recorder:
    """A file object that remembers the OSError of a failed write."""

    def __init__(self, handle, path):
        self.handle, self.path, self.error = handle, path, None  # path: the file it will replace

    def write(self, data):
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name):
        return getattr(self.handle, name)


def _write_error(path, err):
    if err.errno in _FULL:
        return WriteError(err.errno, f"the disk holding {path} is full, so it was not written (the previous "
                                     "version is kept): free some space, then rerun the same command")
    return WriteError(err.errno, f"cannot write {path} ({err.strerror or err}): check the folder's permissions "
                                 "and file system, then rerun the same command")


def remove_leftovers(folder, names):
    """Delete this module's temporary files for `names` left in `folder` by a killed write; returns them."""
    pattern = re.compile(re.escape(TMP_PREFIX) + r"[A-Za-z0-9_]{8}(" + "|".join(map(re.escape, names)) + r")$")
    removed = []
    for entry in os.listdir(folder) if os.path.isdir(folder) else ():
        if pattern.match(entry):
            os.remove(os.path.join(folder, entry))
            removed.append(entry)
    return removed


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path, lines=False):
    """A JSON file (a list of records for JSON lines); None when absent or unreadable."""
    try:
        with open(path) as handle:
            return [json.loads(line) for line in handle if line.strip()] if lines else json.load(handle)
    except (OSError, ValueError):
        return None
