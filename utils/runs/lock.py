"""One process per run folder: an flock(2) on <run>/.lock, which the kernel drops however its
process ends (and NFS holds across nodes). Where the file system has no locks, the file's pid,
host name and boot id decide instead (why and how: docs/resilience.md)."""
import errno
import fcntl
import json
import os
import socket
import time

NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class FolderLocked(RuntimeError):
    """Another process uses the folder (or its lock file is a link); the message is one line naming it."""


def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def me():
    return {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": boot_id(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _alive(holder):
    """True/False for a holder on this host and boot; None when it cannot be told from here."""
    if holder.get("host") != socket.gethostname():
        return None
    if holder.get("boot_id") != boot_id():
        return False  # the machine rebooted since: that process is gone
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        pass  # it exists (another user's) or its record is damaged: count it as alive
    return True


class FolderLock:
    def __init__(self, path):
        self.path = path  # the lock file
        self.fd = None

    def _holder(self):
        try:
            os.lseek(self.fd, 0, os.SEEK_SET)
            return json.loads(os.read(self.fd, 4096).decode() or "{}")
        except (OSError, ValueError):
            return {}

    def _refuse(self, holder, unsure=False):
        who = f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (since {holder.get('since', '?')})"
        folder = os.path.dirname(self.path)
        os.close(self.fd)  # the holder's record stays as it is
        self.fd = None
        if unsure:
            raise FolderLocked(f"{folder} is in use by {who}, which cannot be checked from this host: wait for it, "
                               f"or delete {self.path} if that job is gone, then rerun.")
        raise FolderLocked(f"{folder} is in use by {who}: wait for it to finish, or use another --exp_id.")

    def acquire(self):
        """Take the lock or raise FolderLocked; OSError when the file cannot be made."""
        try:  # never through a link: truncating it would empty whatever file it points at
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
            raise FolderLocked(f"{self.path} is a symbolic link, which the kit never writes through: delete the "
                               "link (its target is left as it is), then rerun.") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in NO_LOCKS:  # held by a live process
                self._refuse(self._holder())
            holder = self._holder()
            alive = _alive(holder) if holder else False
            if alive or alive is None:
                self._refuse(holder, unsure=alive is None)
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, json.dumps(me()).encode())
        os.fsync(self.fd)

    def release(self):
        """Give the lock up (the file stays: deleting a lock file races with the next process's lock)."""
        if self.fd is None:
            return
        try:
            if self._holder().get("pid") == os.getpid():
                os.ftruncate(self.fd, 0)
        except OSError:
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = None
