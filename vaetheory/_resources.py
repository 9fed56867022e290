"""Memory guards: estimate what a run will allocate and refuse it, in one line, before it does.

An allocation the machine cannot back does not fail cleanly on Linux: with overcommit, numpy gets
the address space and the kernel's OOM killer ends the process later, without a word. So sizes
are checked before the large arrays exist: the D x D second-moment matrix (and the copies its
eigendecomposition makes), the hyperparameter grid, and the (grid x latent dim) arrays of the
closed forms (docs/theory.md: every per-dimension quantity of every setting is one such array).

The limit is the smallest of the memory the kernel reports available (``MemAvailable``), a cgroup
limit (containers) and the process's ``ulimit -v`` / ``ulimit -d`` headroom; where none can be
read, nothing is refused.
"""

from __future__ import annotations

import os
from typing import Optional

from .errors import ResourceError

__all__ = ["available_memory", "require", "human_bytes", "covariance_bytes", "solution_bytes",
           "PER_DIM_ARRAYS", "EAGER_PER_DIM_ARRAYS"]

#: per-dimension (grid x d) float64 arrays a Solution holds once every lazy field is read, per
#: latent (measured with tracemalloc: 7-11 for vae/cvae, 19-22 for the two-latent mhvae; rounded up)
PER_DIM_ARRAYS = 12
#: length-d arrays solving allocates at once, whatever the grid (padded spectra, prefix sums;
#: measured 4-7)
EAGER_PER_DIM_ARRAYS = 8


def human_bytes(n: float) -> str:
    """``1.5 GiB``-style size."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> Optional[int]:
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as fh:
                text = fh.read().strip()
            if text == "max":
                continue
            limit = int(text)
            with open(usage_file) as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit < (1 << 60):  # cgroup v1 reports "no limit" as a huge number
            return max(0, limit - usage)
    return None


def _rlimit_headroom() -> Optional[int]:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    best = None
    for name, status in (("RLIMIT_AS", "VmSize:"), ("RLIMIT_DATA", "VmData:")):
        lim = getattr(resource, name, None)
        if lim is None:
            continue
        soft, _ = resource.getrlimit(lim)
        if soft == resource.RLIM_INFINITY or soft < 0:
            continue
        used = 0
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith(status):
                        used = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        room = max(0, soft - used)
        best = room if best is None else min(best, room)
    return best


def available_memory() -> Optional[int]:
    """Bytes this process can still allocate (None when nothing can be read).

    ``VAETHEORY_MEMORY_LIMIT`` (bytes) overrides what the system says -- for tests, and for users
    who want a run to stay well inside a shared machine.
    """
    env = os.environ.get("VAETHEORY_MEMORY_LIMIT")
    if env:
        try:
            return int(float(env))
        except ValueError:
            pass
    known = [v for v in (_meminfo_available(), _cgroup_headroom(), _rlimit_headroom())
             if v is not None]
    return min(known) if known else None


def require(nbytes: float, what: str, advice: str, *, cli: Optional[str] = None) -> None:
    """Raise :class:`ResourceError` (exit 1) when ``nbytes`` exceed what is available.

    ``what`` names the allocation ("the 50000 x 50000 second-moment matrix"), ``advice`` says
    what to change; ``cli`` is the advice in the command line's words, if different.
    """
    avail = available_memory()
    if avail is None or nbytes <= avail:
        return
    head = (f"not enough memory: {what} needs about {human_bytes(nbytes)} and "
            f"{human_bytes(avail)} is available")
    raise ResourceError(f"{head}; {advice}", cli=f"{head}; {cli or advice}")


def covariance_bytes(D: int) -> int:
    """The D x D float64 moment matrix, its symmetrised copy and the eigendecomposition's output
    and workspace (four D x D arrays)."""
    return 4 * 8 * int(D) * int(D)


def solution_bytes(n_points: int, dims: int, *, per_dim: bool = True) -> int:
    """float64 bytes of a closed-form solution over ``n_points`` grid points whose latents have
    ``dims`` dimensions in total (d, or d1 + d2): the length-d arrays solving allocates, a few
    grid-shaped arrays (hyperparameters, counts, ranks, losses) and, with ``per_dim``, every
    (grid x d) field once read."""
    per_point = 16 + (PER_DIM_ARRAYS * int(dims) if per_dim else 0)
    return 8 * (EAGER_PER_DIM_ARRAYS * int(dims) + int(n_points) * per_point)
