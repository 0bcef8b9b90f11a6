"""A small process pool that knows which task each worker holds.

concurrent.futures cannot say which task killed a worker; here each worker gets
one task at a time over its own pipe, so a worker that dies (segfault, OOM kill)
or overruns its hard limit costs exactly the task it held: the parent reports it
and starts a fresh worker. Workers are spawned, never forked, so framework state
is never shared. Tasks may come in groups (cells of one framework, loss and
dtype): a worker keeps to its group while it has tasks, so what a process
compiles and caches for one cell serves the next.
"""
from __future__ import annotations

import os
import signal
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context, spawn
from multiprocessing.connection import Connection, wait
from typing import Any

from harness.adapters.base import COMPILE_CACHE_ENV


@contextmanager
def sharing_compiled() -> Iterator[dict[str, str]]:
    """The environment of worker processes on one machine that share a folder of
    what their frameworks compiled (COMPILE_CACHE_ENV); the folder is removed when
    the block ends."""
    with tempfile.TemporaryDirectory(prefix="lossbench-compiled-") as folder:
        yield {COMPILE_CACHE_ENV: folder}


@dataclass(frozen=True)
class Failure:
    """A task that produced no result: ``kind`` is 'crashed' (the worker died:
    ``signal`` is the signal that killed it, None where it exited), 'timeout'
    (past its hard limit, killed) or 'error' (the task raised)."""

    kind: str
    message: str
    signal: int | None = None


class WorkerStartFailed(OSError):
    """No worker process could be started or kept alive: the machine's fault."""


def _died(process: Any) -> Failure:
    """How a dead worker ended: by a signal (named) or with an exit code."""
    process.join(5)
    code = process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        return Failure("crashed", f"the worker process was killed by {name}", -code)
    return Failure("crashed", f"the worker process exited with code {code} while running this task")


def _worker_loop(conn: Connection, threads: int, environment: dict[str, str]) -> None:
    os.environ.update(environment)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[var] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # its C++ log lines, errors included: failures raise
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    # Frameworks' Python warnings (an overflow in a cast to float16) say what the cell's
    # numbers show (non-finite values, classified): a sweep prints its own lines only.
    warnings.simplefilter("ignore")
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        function, task = message
        try:
            conn.send((True, function(task)))
        except Exception as exc:  # noqa: BLE001  reported to the parent as this task's failure
            conn.send((False, f"{type(exc).__name__}: {exc}"))


class _Worker:
    def __init__(self, threads: int, environment: dict[str, str]) -> None:
        context = get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_loop, args=(child, threads, environment), daemon=True)
        self.process.start()
        child.close()
        self.task: Any = None
        self.group: Hashable = None
        self.deadline = 0.0

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
        self.conn.close()


class _Queue:
    """Tasks by group, in order: a worker takes the next task of its own group,
    else the first group nobody has started, else one from the largest group left."""

    def __init__(self, tasks: Iterable[Any], group: Callable[[Any], Hashable]) -> None:
        self.pending: dict[Hashable, deque[Any]] = {}
        for task in tasks:
            self.pending.setdefault(group(task), deque()).append(task)
        self.unstarted = deque(self.pending)
        self.started: set[Hashable] = set()
        self.count = sum(map(len, self.pending.values()))

    def __len__(self) -> int:
        return self.count

    def pop(self, worker: _Worker) -> Any:
        key = worker.group
        if key not in self.pending:
            while self.unstarted and self.unstarted[0] in self.started:
                self.unstarted.popleft()
            key = (self.unstarted.popleft() if self.unstarted
                   else max(self.pending, key=lambda k: len(self.pending[k])))
        self.started.add(key)
        tasks = self.pending[key]
        task = tasks.popleft()
        if not tasks:
            del self.pending[key]
        self.count -= 1
        worker.group = key
        return task


def _one_group(task: Any) -> Hashable:
    return None


class WorkerPool:
    """``jobs`` workers of ``threads`` threads each, with ``environment`` added to theirs."""

    def __init__(self, jobs: int, threads: int = 1, environment: dict[str, str] | None = None) -> None:
        self.jobs = max(1, jobs)
        self.threads = threads
        self.environment = environment or {}
        self.workers: list[_Worker] = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(kill=worker.task is not None)
        self.workers = []

    def _spawn(self, group: Hashable = None) -> _Worker:
        """A fresh worker (keeping to ``group``, where it replaces one that did)."""
        worker = _Worker(self.threads, self.environment)
        worker.group = group
        self.workers.append(worker)
        return worker

    def run(self, function: Callable[[Any], Any], tasks: Iterable[Any],
            hard_limit: Callable[[Any], float] = lambda task: float("inf"),
            group: Callable[[Any], Hashable] = _one_group) -> Iterator[tuple[Any, Any]]:
        """Yield (task, result or Failure) as tasks finish, in any order; ``group``
        keeps a worker on tasks of one group (see _Queue)."""
        queue = _Queue(tasks, group)
        while len(self.workers) < min(self.jobs, len(queue)):
            self._spawn()
        busy: dict[Connection, _Worker] = {}

        def assign(worker: _Worker) -> None:
            task = queue.pop(worker)
            try:
                worker.conn.send((function, task))
            except OSError:  # it died while idle (killed from outside): a fresh one takes the task
                worker.stop(kill=True)
                self.workers.remove(worker)
                worker = self._spawn(worker.group)
                try:
                    worker.conn.send((function, task))
                except OSError:
                    worker.process.join(5)
                    executable = os.fsdecode(spawn.get_executable())
                    raise WorkerStartFailed(
                        f"no worker process could be started: {executable} exited with code "
                        f"{worker.process.exitcode} before its first task") from None
            worker.task = task
            worker.deadline = time.monotonic() + hard_limit(task)
            busy[worker.conn] = worker

        for worker in list(self.workers):
            if queue:
                assign(worker)
        while busy:
            ready = wait(list(busy) + [w.process.sentinel for w in busy.values()], timeout=1.0)
            for worker in list(busy.values()):
                outcome: Any = None
                if worker.conn in ready:
                    try:
                        ok, payload = worker.conn.recv()
                        outcome = payload if ok else Failure("error", payload)
                    except (EOFError, OSError):
                        outcome = _died(worker.process)
                elif worker.process.sentinel in ready or not worker.process.is_alive():
                    outcome = _died(worker.process)
                elif time.monotonic() > worker.deadline:
                    outcome = Failure("timeout", "the worker did not answer within the hard time limit; killed")
                if outcome is None:
                    continue
                task = worker.task
                del busy[worker.conn]
                worker.task = None
                if isinstance(outcome, Failure) and outcome.kind in ("crashed", "timeout"):
                    worker.stop(kill=True)
                    self.workers.remove(worker)
                    worker = self._spawn(worker.group) if queue else worker
                if queue and worker in self.workers:
                    assign(worker)
                yield task, outcome
