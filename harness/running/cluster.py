"""Sweeps on a Dask cluster: the same plan, store and cache keys as a local sweep;
only where the tasks run changes.

The client (the `lossbench sweep` process) plans, and alone writes the store and
the reference cache: reference chunks come back to it and it assembles and
caches them as a local sweep does, so a distributed sweep resumes like a local
one and a local rerun reads what the cluster computed. A cell's references go to
the workers through Dask (scattered once per input set), never as a path on the
client's disk: the workers need no shared file system.

Isolation is the local pool's: each Dask worker keeps one child process
(harness.running.workers) and runs every task in it, so a task that crashes or
hangs kills only that child and is reported as locally (a fault signal, an exit,
a timeout), the cell timeout's SIGALRM fires in the child's main thread, and
framework threads are set there as locally. A Dask worker killed from outside
has its task rerun elsewhere by Dask; one that keeps dying ends as Dask's
KilledWorker, counted like a worker lost to an outside signal (stored crashed on
the second run). Timed cells need a whole host: they run on the client's machine,
one at a time, as in a local sweep.

Workers must run the client's lossbench, frameworks and reference code: each is
asked before it gets a task, and one that differs is refused, named, with what
differs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.running.workers import Failure, WorkerPool

LOCAL = "local"
# The distributions whose versions a worker must share with the client.
DISTRIBUTIONS = ("lossbench", "numpy", "ml_dtypes", "mpmath", "python-flint", "torch", "tensorflow-cpu", "keras",
                 "jax", "jaxlib", "optax", "pytensor", "dask", "distributed")


class ClusterRefused(ValueError):
    """The cluster cannot run this sweep (no usable worker): a usage error."""


def environment_versions() -> dict[str, str]:
    """This process's versions of every distribution that changes a result, and a
    digest of the harness and reference code (installed editable, the version alone
    would not see an edit)."""
    versions = {}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for folder in ("harness", "reference"):
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    versions["code"] = digest.hexdigest()[:16]
    return versions


def _worker_versions() -> dict[str, str]:
    """environment_versions as a worker computes it (sent by name: the worker's own code runs)."""
    return environment_versions()


def differences(mine: dict[str, str], theirs: dict[str, str]) -> list[str]:
    return [f"{name} {theirs.get(name, 'absent')} (client {version})" for name, version in sorted(mine.items())
            if theirs.get(name) != version]


_CHILD: dict[str, WorkerPool] = {}
_CHILD_LOCK = threading.Lock()


def _in_child(function: Callable[[Any], Any], task: Any, limit: float, threads: int, *references: bytes | None) -> Any:
    """Run on a Dask worker: the task in this worker's child process, as the local
    pool runs it; a cell job gets its references' bytes in place of their paths."""
    if references:
        task = dataclasses.replace(task, value_reference=references[0], gradient_reference=references[1])
    with _CHILD_LOCK:
        pool = _CHILD.setdefault("pool", WorkerPool(1, threads))
        ((_, outcome),) = list(pool.run(function, [task], lambda _: limit))
    return outcome


class DaskPool:
    """The WorkerPool interface over a Dask client: ``run`` yields (task, result or
    Failure) as tasks finish, on the checked workers only."""

    def __init__(self, client: Any, workers: list[str], threads: int) -> None:
        self.client, self.workers, self.threads = client, workers, threads
        self.jobs = len(workers)
        self._scattered: dict[str, Any] = {}

    def __enter__(self) -> DaskPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._scattered.clear()

    def _reference(self, path: str | None) -> Any:
        """A reference file's bytes on the cluster, scattered once per file."""
        if path is None:
            return None
        if path not in self._scattered:
            self._scattered[path] = self.client.scatter(Path(path).read_bytes(), hash=False, broadcast=False)
        return self._scattered[path]

    def run(self, function: Callable[[Any], Any], tasks: Iterable[Any],
            hard_limit: Callable[[Any], float] = lambda task: float("inf")) -> Iterator[tuple[Any, Any]]:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        futures = {}
        for task in tasks:
            references = (self._reference(task.value_reference), self._reference(task.gradient_reference)) \
                if hasattr(task, "value_reference") else ()
            future = self.client.submit(_in_child, function, task, hard_limit(task), self.threads, *references,
                                        pure=False, workers=self.workers, allow_other_workers=False)
            futures[future] = task
        for future in as_completed(list(futures)):
            task = futures.pop(future)
            try:
                outcome = future.result()
            except KilledWorker as exc:
                outcome = Failure("crashed", f"its Dask worker died on every try ({exc})", signal=9)
            except Exception as exc:  # noqa: BLE001  the task raised outside the child: lossbench's, not the cell's
                outcome = Failure("error", f"{type(exc).__name__}: {exc}")
            yield task, outcome


def connect(address: str, jobs: int) -> tuple[Any, Any]:
    """(client, cluster): a LocalCluster of ``jobs`` worker processes for ``local``,
    else a client of the scheduler at ``address``. Workers may start children (the
    isolation above), so they must not be daemonic."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    dask.config.set({"distributed.worker.daemon": False})
    logging.getLogger("distributed").setLevel(logging.WARNING)  # a sweep prints its own lines only
    if address == LOCAL:
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=":0")
        return Client(cluster), cluster
    try:
        return Client(address, timeout="20s"), None
    except (OSError, TimeoutError) as exc:
        raise ClusterRefused(f"no Dask scheduler answers at {address}: {exc}") from None


def checked_workers(client: Any) -> tuple[list[str], list[str]]:
    """(workers that run the client's versions, one line per refused worker)."""
    mine = environment_versions()
    answers = client.run(_worker_versions)
    accepted, refused = [], []
    for worker, theirs in sorted(answers.items()):
        differ = differences(mine, theirs)
        if differ:
            refused.append(f"worker {worker} refused: {', '.join(differ)}")
        else:
            accepted.append(worker)
    if not accepted:
        raise ClusterRefused("no Dask worker runs this lossbench: " + "; ".join(refused) if refused
                             else "the Dask cluster has no worker")
    return accepted, refused
