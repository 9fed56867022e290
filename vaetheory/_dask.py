"""The moment pass on Dask (docs/theory.md §9.7): optional extra ``vaetheory[dask]``.

Second moments are a sum over rows, so they distribute exactly: every partition (a block of a
Dask array, or a run of row blocks the driver streams from a file) becomes a float64 partial --
rows, scale exponent, mean, centred scatter or QR factor (:mod:`vaetheory._accumulate`) -- on a
worker, and the driver merges the partials in row order with Chan's parallel update. The result
equals the single-process one to rounding (~1e-15 relative; the test asks 1e-12).
"""

from __future__ import annotations

import contextlib
from collections import deque

import numpy as np

from . import _accumulate as acc
from .errors import ResourceError

_EXTRA = 'pip install "vaetheory[dask]"'


def require(what="dask"):
    """Import dask (and distributed) or raise a one-line error naming the extra."""
    try:
        import dask  # noqa: F401
        if what == "distributed":
            import distributed  # noqa: F401
    except ImportError:
        raise ResourceError(f"the Dask path needs the optional packages dask and distributed: "
                            f"{_EXTRA}") from None
    return None


def partial(block, kind, dim, name):
    """One partition's partial moments (runs on a worker; non-finite values are counted, not
    raised, so the driver can name the first one in file rows)."""
    a = acc.accumulator(kind, dim, name=name)
    a.add(np.asarray(block).reshape(block.shape[0], -1))
    return a.finish(check=False)


def _merge_in_order(parts, kind, dim, name):
    out = acc.accumulator(kind, dim, name=name)
    for p in parts:
        out.merge(p)
    return out.finish(check=True)


def partial_of_array(X, kind, name="X"):
    """Merged partial moments of a 2-d Dask array, computed on its current scheduler (a
    ``distributed.Client`` when one is active)."""
    require()
    import dask

    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})  # whole rows per partition
    dim = int(X.shape[1])
    tasks = [dask.delayed(partial)(blk, kind, dim, name) for blk in X.to_delayed().ravel()]
    parts = dask.compute(*tasks)
    return _merge_in_order(parts, kind, dim, name)


def array_runner(X):
    """A runner for :func:`vaetheory.moments._spectrum_of` over a Dask array."""
    def run(kind, blocks, dim, name):
        return partial_of_array(X, kind, name=name)
    return run


def client_runner(client, partition_rows=None, in_flight=None):
    """A runner that sends the row blocks a driver streams (any :class:`~vaetheory.io.Selection`)
    to the workers of ``client`` in partitions and merges what comes back, in row order; at most
    ``in_flight`` partitions (default: twice the workers) are held at once, so memory stays flat."""
    def run(kind, blocks, dim, name):
        rows = partition_rows or 4 * acc.block_rows(dim)
        limit = in_flight or 2 * max(1, len(client.scheduler_info().get("workers", {})))
        out = acc.accumulator(kind, dim, name=name)
        pending = deque()
        buf, have = [], 0

        def send():
            nonlocal buf, have
            if not buf:
                return
            part = np.concatenate(buf, axis=0) if len(buf) > 1 else np.asarray(buf[0])
            buf, have = [], 0
            pending.append(client.submit(partial, part, kind, dim, name, pure=False))
            while len(pending) > limit:
                out.merge(pending.popleft().result())

        for b in blocks:
            b = np.asarray(b)
            buf.append(b)
            have += b.shape[0]
            if have >= rows:
                send()
        send()
        while pending:
            out.merge(pending.popleft().result())
        return out.finish(check=True)
    return run


@contextlib.contextmanager
def connect(scheduler=None, workers=None):
    """A ``distributed.Client``: to the scheduler at ``scheduler`` (e.g. ``tcp://host:8786``), or
    to a local cluster of ``workers`` processes (one thread each); yields None if neither."""
    if scheduler is None and workers is None:
        yield None
        return
    require("distributed")
    import distributed

    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ResourceError(f"cannot reach the Dask scheduler at {scheduler}: "
                                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                                ) from None
        try:
            yield client
        finally:
            client.close()
        return
    cluster = distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1,
                                       processes=True, dashboard_address=None,
                                       silence_logs=50)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
