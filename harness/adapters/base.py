"""What every framework adapter provides; the per-framework files fill it in."""
from __future__ import annotations

import inspect
import numbers
import os
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.model.spec import LossSpec


@dataclass(frozen=True)
class ApiCall:
    """One call of a framework's loss API: what was called, the options the adapter
    passed, and the numeric or boolean defaults it left alone (read from the API's
    signature: these are the framework's own choices, such as an eps)."""

    api: str
    passed: tuple[tuple[str, Any], ...]
    defaults: tuple[tuple[str, Any], ...]


_CALLS: ContextVar[list[ApiCall] | None] = ContextVar("api_calls", default=None)

# A folder the worker processes of one sweep share, where an adapter may keep what
# its framework compiled for a shape, so that another worker (the timing worker)
# loads it instead of compiling it again. Never read by a compile-time measurement:
# cold_compiler keeps it out of the block.
COMPILE_CACHE_ENV = "LOSSBENCH_COMPILE_CACHE"


def note_call(api: Callable[..., Any], *args: Any, **options: Any) -> None:
    """Inside ``recording()``, note a call of ``api`` for the conventions atlas
    (for adapters that reuse what an earlier identical call built)."""
    calls = _CALLS.get()
    if calls is not None:
        calls.append(_describe(api, args, options))


def api_call(api: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """Call ``api`` (a loss function, or a loss class to instantiate), noted as note_call does."""
    note_call(api, *args, **options)
    return api(*args, **options)


def _describe(api: Callable[..., Any], args: tuple[Any, ...], options: dict[str, Any]) -> ApiCall:
    name = f"{api.__module__}.{api.__qualname__}"
    try:
        signature = inspect.signature(api)
        bound = set(signature.bind_partial(*args, **options).arguments)
    except (TypeError, ValueError):
        return ApiCall(name, tuple(sorted(options.items())), ())
    defaults = tuple(
        (p.name, p.default) for p in signature.parameters.values()
        if p.name not in bound and isinstance(p.default, numbers.Number)
    )
    return ApiCall(name, tuple(sorted(options.items())), defaults)


@contextmanager
def recording() -> Iterator[list[ApiCall]]:
    """Collect the calls noted inside the block."""
    calls: list[ApiCall] = []
    token = _CALLS.set(calls)
    try:
        yield calls
    finally:
        _CALLS.reset(token)


def error_line(exc: BaseException) -> str:
    """A framework's exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


# impl(args by canonical name, reduction, params) -> framework tensor
Impl = Callable[[dict[str, Any], str, dict[str, float]], Any]


def reduce(items: Any, reduction: str, mean: Callable[[Any], Any], total: Callable[[Any], Any]) -> Any:
    """The reduction every adapter applies to its per-item values, with the
    framework's own mean and sum: 'none' keeps the items."""
    if reduction == "mean":
        return mean(items)
    if reduction == "sum":
        return total(items)
    return items


FAILS, INACCURATE = "fails", "inaccurate"


@dataclass(frozen=True)
class Known:
    """A cell a framework cannot run (FAILS) or computes far less accurately than
    its dtype allows (INACCURATE), and why: data, as OpInfo keeps its skips. None
    in impl, dtypes, device or mode means every one."""

    kind: str
    loss: str
    reason: str
    impl: str | None = None
    dtypes: tuple[str, ...] | None = None
    device: str | None = None
    mode: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in (FAILS, INACCURATE):
            raise ValueError(f"known {self.loss}: kind must be {FAILS!r} or {INACCURATE!r}")

    def covers(self, loss: str, impl: str, dtype: str, device: str | None, mode: str | None = None) -> bool:
        """Whether this is known of the cell; a device or mode of None asked for is any."""
        return (loss == self.loss and self.impl in (None, impl) and (self.dtypes is None or dtype in self.dtypes)
                and (device is None or self.device in (None, device)) and (mode is None or self.mode in (None, mode)))


@dataclass(frozen=True)
class Prepared:
    """One loss call made ready to time: arguments already converted (and placed on
    the device), so only the call itself is measured. ``synchronize(result)`` blocks until
    the result exists (CUDA synchronisation, TensorFlow forcing); the timer calls it
    before each clock reading. ``bytes_moved`` is the least traffic the call can
    cause: every argument read once and the result written once."""

    call: Callable[[], Any]
    synchronize: Callable[[Any], Any]
    context: Callable[[], AbstractContextManager[Any]]
    bytes_moved: int
    method: str  # "forward", or how the gradient is obtained


@dataclass(frozen=True)
class Output:
    """A framework's result read back exactly (every format widens exactly to
    float64), with the dtype the framework really returned."""

    values: np.ndarray
    result_dtype: str


class Adapter(ABC):
    """One framework. ``impls`` maps impl name -> loss name -> implementation;
    ``known`` lists the cells it cannot run or computes far less accurately than
    its dtype allows, each with why (the cell tests check each still shows);
    ``modes`` how it can run them, its default first (harness.model.spec.MODES)."""

    name: str
    impls: Mapping[str, Mapping[str, Impl]]
    known: tuple[Known, ...] = ()
    modes: tuple[str, ...] = ("eager",)

    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def devices(self) -> list[str]: ...

    @abstractmethod
    def to_native(self, array: np.ndarray, dtype: str | None, device: str) -> Any:
        """``dtype`` None means an integer (class index) array."""

    @abstractmethod
    def to_output(self, result: Any) -> Output: ...

    def _known(self, kind: str, loss: str, impl: str, dtype: str, device: str | None,
               mode: str | None = None) -> str | None:
        return next((k.reason for k in self.known if k.kind == kind and k.covers(loss, impl, dtype, device, mode)),
                    None)

    def known_failure(self, loss: str, impl: str, dtype: str, device: str, mode: str | None = None) -> str | None:
        """Why the framework itself cannot run this cell (in ``mode``; None: in some mode), if it cannot."""
        return self._known(FAILS, loss, impl, dtype, device, mode)

    def known_inaccuracy(self, loss: str, impl: str, dtype: str, mode: str | None = None) -> str | None:
        """Why this cell is far less accurate than its dtype allows (in ``mode``; None:
        in some mode), if it is."""
        return self._known(INACCURATE, loss, impl, dtype, None, mode)

    def settings(self) -> dict[str, Any]:
        """Framework-wide settings that change loss values, read from the framework."""
        return {}

    def device_name(self, device: str) -> str | None:
        """What an accelerator is, for the run's environment record (None: the host
        CPU, which harness.measure.environment names)."""
        return None

    def context(self, device: str) -> AbstractContextManager[Any]:
        """Where and how the call runs (device placement, autograd off)."""
        return nullcontext()

    def threads(self, count: int | None) -> AbstractContextManager[Any]:
        """Calls in the block use ``count`` threads (None: the process's own count)
        where this framework's results depend on its thread count. The base changes
        nothing: NumPy's and PyTensor's loops run on one thread, and TensorFlow's
        and XLA's pools, fixed when they start, give the same values on one thread
        as on two (tests/test_sweep.py checks every framework)."""
        return nullcontext()

    def impl_names(self, loss: str) -> list[str]:
        return [impl for impl, table in self.impls.items() if loss in table]

    # How this framework differentiates (the method recorded with gradient timings).
    gradient_method: str = "none"

    def gradient(self, spec: LossSpec, impl: str) -> Impl | None:
        """d(reduced loss)/d(input) as an impl returning a tensor shaped like input,
        or None where this impl has no gradient."""
        return None

    def nbytes(self, tensor: Any) -> int:
        """Bytes the tensor occupies (frameworks override this where reading the
        tensor back to NumPy would copy it)."""
        return int(np.asarray(tensor).nbytes)

    def synchronize(self, result: Any, device: str) -> None:
        """Block until ``result`` is computed (the timer reads the clock after this)."""

    def stream_kernels(self, device: str, elements: int) -> dict[str, Callable[[], Any]]:
        """STREAM kernels on float64 arrays of ``elements``, by name (see harness.measure.bandwidth)."""
        return {}

    def native_args(self, spec: LossSpec, arrays: Mapping[str, np.ndarray], dtype: str, device: str) -> dict[str, Any]:
        return {a.name: self.to_native(arrays[a.name], dtype if a.domain.is_float else None, device) for a in spec.args}

    def compile(self, function: Impl) -> Impl:
        """``function`` traced and compiled by the framework's compiler (mode
        'compiled'); frameworks without one keep the base, which refuses."""
        raise NotImplementedError(f"{self.name} has no compiler")

    @contextmanager
    def cold_compiler(self) -> Iterator[None]:
        """Compilations in the block are cold: the compiler's caches emptied first,
        no cache on disk read. After it the process compiles as before (in a sweep,
        from the shared folder again: what the other workers compiled is loaded)."""
        yield

    def run(
        self, spec: LossSpec, impl: str, arrays: Mapping[str, np.ndarray],
        dtype: str, device: str, reduction: str, params: dict[str, float], gradient: bool = False,
        mode: str | None = None,
    ) -> Output:
        """The loss (or, with ``gradient``, its gradient with respect to input) read back."""
        function = self._function(spec, impl, gradient, reduction, mode)
        with self.context(device):
            return self.to_output(function(self.native_args(spec, arrays, dtype, device), reduction, params))

    def compile_seconds(
        self, spec: LossSpec, impl: str, arrays: Mapping[str, np.ndarray],
        dtype: str, device: str, reduction: str, params: dict[str, float],
    ) -> tuple[float, float]:
        """Seconds of the first call of a freshly compiled loss: cold (the compiler's
        caches emptied first), then warm (a second fresh compilation, caches kept).
        Either includes tracing, compiling and one call; the per-call time is
        timed apart, after compilation. A process's first compilation also starts
        the compiler (imports and sets up its modules, seconds for inductor): that
        is done once before, untimed, on a trivial function, so that a cold figure is
        the compilation alone and no kernel of this loss is compiled before it."""
        def first_call(function: Impl) -> float:
            compiled = self.compile(function)
            with self.context(device):
                native = self.native_args(spec, arrays, dtype, device)
                started = time.perf_counter()
                self.synchronize(compiled(native, reduction, params), device)
                return time.perf_counter() - started

        if not self.__dict__.get("_compiler_started"):
            first_call(_doubled_input)
            self._compiler_started = True
        with self.cold_compiler():
            cold = first_call(self.impls[impl][spec.name])
            return cold, first_call(self.impls[impl][spec.name])

    def prepare(
        self, spec: LossSpec, impl: str, arrays: Mapping[str, np.ndarray],
        dtype: str, device: str, reduction: str, params: dict[str, float], gradient: bool = False,
        mode: str | None = None,
    ) -> Prepared:
        """The call (or gradient) ready for the timer; run once here, which also
        gives the result whose size counts in the bytes moved (and, compiled,
        compiles it: the timer measures calls after compilation)."""
        function = self._function(spec, impl, gradient, reduction, mode)
        with self.context(device):
            native = self.native_args(spec, arrays, dtype, device)
            result = function(native, reduction, params)
            self.synchronize(result, device)
        read = sum(self.nbytes(t) for t in native.values())
        return Prepared(call=lambda: function(native, reduction, params),
                        synchronize=lambda r: self.synchronize(r, device),
                        context=lambda: self.context(device),
                        bytes_moved=read + self.nbytes(result),
                        method=self.gradient_method if gradient else "forward")

    def _function(self, spec: LossSpec, impl: str, gradient: bool, reduction: str, mode: str | None) -> Impl:
        """The impl (or its gradient) in ``mode`` (None: the framework's default)."""
        mode = mode or self.modes[0]
        if mode not in self.modes:
            raise ValueError(f"{self.name} has no {mode} mode (modes: {', '.join(self.modes)})")
        if not gradient:
            function = self.impls[impl][spec.name]
        elif reduction == "none":
            raise ValueError("a gradient is taken of the reduced loss: reduction must be mean or sum")
        else:
            found = self.gradient(spec, impl)
            if found is None:
                raise NotImplementedError(f"{self.name} {impl} has no gradient for {spec.name}")
            function = found
        if mode == "eager":
            return function
        compiled: dict[tuple[str, str, bool], Impl] = self.__dict__.setdefault("_compiled", {})
        key = (spec.name, impl, gradient)  # compiled once per process, as a user compiles once
        if key not in compiled:
            compiled[key] = self.compile(function)
        return compiled[key]


def _doubled_input(args: Mapping[str, Any], reduction: str, params: dict[str, float]) -> Any:
    """A function any framework compiles (Adapter.compile_seconds starts the compiler with it)."""
    return args["input"] * 2


@dataclass
class Captured:
    """What a block wrote to file descriptor 2 (filled in when the block ends)."""

    text: str = ""


@contextmanager
def captured_stderr() -> Iterator[Captured]:
    """File descriptor 2 redirected to a temporary file for the block (C libraries
    write there directly, past sys.stderr). If the block raises, what it wrote is
    passed on to stderr, so no error is hidden."""
    captured = Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")
