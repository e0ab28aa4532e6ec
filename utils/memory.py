"""A process's memory as the operating system counts it (standard library only, so that the
measuring never adds to what is measured)."""
import resource


def peak_rss_mb():
    """Largest resident set of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB
