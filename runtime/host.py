"""What this machine lets the process use."""

from __future__ import annotations

import os


def default_threads() -> int:
    """The CPUs this process may use (cgroup/affinity aware), not the machine's core count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
