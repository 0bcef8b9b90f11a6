"""Sweeps on a Dask cluster: the same plan, store and cache keys as a local sweep;
only where the tasks run changes.

The client (the `lossbench sweep` process) plans, and alone writes the store and
the reference cache: reference chunks come back to it and it assembles and
caches them as a local sweep does, so a distributed sweep resumes like a local
one and a local rerun reads what the cluster computed. A cell's references go to
the workers through Dask (scattered once per input set), never as a path on the
client's disk: the workers need no shared file system.

Isolation is the local pool's: each Dask worker keeps one child process
(harness.running.workers) and runs every task in it (tasks travel in small
batches, one Dask round trip each, and run one by one in the child), so a task that crashes or
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
import signal
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path
from typing import Any

from harness import adapters
from harness.running.workers import Failure, WorkerPool

LOCAL = "local"
# Besides each framework's own distribution (harness.adapters.FRAMEWORKS), what a
# worker must share with the client: lossbench, the reference's libraries, the
# frameworks' companions whose code computes losses, and Dask itself.
COMPANIONS = ("lossbench", "ml_dtypes", "mpmath", "python-flint", "keras", "jaxlib", "optax", "dask", "distributed")


class ClusterRefused(ValueError):
    """The cluster cannot run this sweep (no usable worker): a usage error."""


def environment_versions() -> dict[str, str]:
    """This process's versions of every distribution that changes a result, and a
    digest of the harness and reference code (installed editable, the version alone
    would not see an edit)."""
    versions = {name: adapters.installed_version(name) or "absent" for name in adapters.FRAMEWORKS}
    for name in COMPANIONS:
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


_COPIES: dict[str, str] = {}  # a reference file on the client -> its copy on this worker


def _local_copy(name: str, data: bytes) -> str:
    """A reference's bytes as a file in this Dask worker's own folder (which Dask
    removes with the worker), written once: the child reads it from there, and the
    bytes never cross the pipe to the child with every task."""
    if name not in _COPIES:
        from distributed import get_worker

        folder = Path(get_worker().local_directory) / "lossbench-references"
        folder.mkdir(exist_ok=True)
        path = folder / Path(name).name
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(path)
        _COPIES[name] = str(path)
    return _COPIES[name]


def _in_child(function: Callable[[Any], Any], tasks: list[Any], limits: list[float], threads: int,
              references: dict[str, bytes]) -> list[Any]:
    """Run on a Dask worker: a batch of tasks in this worker's child process, one
    after another as the local pool runs them (a task that kills the child costs
    that task alone); a cell job reads its references from this worker's copies of
    the bytes the client sent, in place of the client's paths."""
    if references:
        copies = {name: _local_copy(name, data) for name, data in references.items()}
        tasks = [dataclasses.replace(t, value_reference=copies.get(t.value_reference),
                                     gradient_reference=copies.get(t.gradient_reference)) for t in tasks]
    limit = dict(zip(map(id, tasks), limits))
    with _CHILD_LOCK:
        pool = _CHILD.setdefault("pool", WorkerPool(1, threads))
        done = {id(task): outcome for task, outcome in pool.run(function, tasks, lambda t: limit[id(t)])}
    return [done[id(task)] for task in tasks]


# Tasks travel in batches: one Dask round trip per batch, not per task, while
# leaving each worker several batches to share out. At most this many per batch.
BATCH = 16


class DaskPool:
    """The WorkerPool interface over a Dask client: ``run`` yields (task, result or
    Failure) as tasks finish (a batch at a time), on the checked workers only."""

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

    def _references(self, batch: list[Any]) -> dict[str, Any]:
        """The batch's reference files as bytes on the cluster, each scattered once."""
        found = {}
        for task in batch:
            for path in (getattr(task, "value_reference", None), getattr(task, "gradient_reference", None)):
                if path is None:
                    continue
                if path not in self._scattered:
                    self._scattered[path] = self.client.scatter(Path(path).read_bytes(), hash=False, broadcast=False)
                found[path] = self._scattered[path]
        return found

    def run(self, function: Callable[[Any], Any], tasks: Iterable[Any],
            hard_limit: Callable[[Any], float] = lambda task: float("inf"),
            group: Callable[[Any], Hashable] = lambda task: None) -> Iterator[tuple[Any, Any]]:
        """As WorkerPool.run; a batch holds tasks of one group where it can."""
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        groups: dict[Hashable, list[Any]] = {}
        for task in tasks:
            groups.setdefault(group(task), []).append(task)
        queue = [task for members in groups.values() for task in members]
        size = max(1, min(BATCH, len(queue) // (4 * self.jobs)))
        futures = {}
        for start in range(0, len(queue), size):
            batch = queue[start:start + size]
            future = self.client.submit(_in_child, function, batch, [hard_limit(t) for t in batch], self.threads,
                                        self._references(batch), pure=False, workers=self.workers,
                                        allow_other_workers=False)
            futures[future] = batch
        for future in as_completed(list(futures)):
            batch = futures.pop(future)
            try:
                outcomes = future.result()
            except KilledWorker as exc:
                lost = Failure("crashed", f"its Dask worker died on every try ({exc})", signal=signal.SIGKILL)
                outcomes = [lost] * len(batch)
            except Exception as exc:  # noqa: BLE001  raised outside the child: lossbench's, not the cells'
                outcomes = [Failure("error", f"{type(exc).__name__}: {exc}")] * len(batch)
            yield from zip(batch, outcomes)


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
