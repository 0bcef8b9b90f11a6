"""What a run ran on: one registry of metadata keys (name, type, how it is
shown), collected once per run, stored with it as JSON and read back typed, as
pyperf keeps its metadata.
"""
from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import adapters
from harness.model import registry


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Key:
    """One metadata key: its JSON type and how a reader is shown its value."""

    name: str
    kind: type
    label: str  # shown as "label: value"

    def read(self, data: Mapping[str, Any]) -> Any:
        value = data.get(self.name)
        if value is not None and not isinstance(value, self.kind):
            raise ValueError(f"environment {self.name} = {value!r} is not {self.kind.__name__}")
        return value


KEYS: tuple[Key, ...] = (
    Key("python", str, "Python"),
    Key("platform", str, "platform"),
    Key("cpu", str, "CPU"),
    Key("cores", int, "cores"),
    Key("jobs", int, "worker processes"),
    Key("threads_per_worker", int, "threads per worker"),
    # torch's results depend on its thread count: a run records what its values had.
    Key("value_threads", int, "threads of every value and gradient measured"),
    Key("timing_threads", int, "threads of the timed calls"),
    # TensorFlow's oneDNN kernels may round differently; its atlas entries say whether they were on.
    Key("tf_enable_onednn_opts", str, "TF_ENABLE_ONEDNN_OPTS"),
)


@dataclass(frozen=True)
class FrameworkInfo:
    """A framework as a run found it (collected in a worker: the parent imports none)."""

    available: bool
    version: str | None = None
    devices: tuple[str, ...] = ()
    device_names: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None
    impls: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # loss -> impls; for planning, not stored
    modes: tuple[str, ...] = ()  # how it can run a loss, its default first

    def line(self, name: str) -> str:
        if not self.available:
            return f"{name}: unavailable ({self.reason})"
        return f"{name} {self.version} ({', '.join(f'{d}: {n}' for d, n in self.device_names.items())})"


@dataclass(frozen=True)
class Environment:
    """The machine and frameworks of a run; ``values`` holds the KEYS (None where unknown)."""

    values: Mapping[str, Any]
    frameworks: Mapping[str, FrameworkInfo] = field(default_factory=dict)

    @classmethod
    def collect(cls, frameworks: Mapping[str, FrameworkInfo], jobs: int, threads: int,
                timing_threads: int | None) -> Environment:
        return cls({"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model(),
                    "cores": os.cpu_count(), "jobs": jobs, "threads_per_worker": threads,
                    "value_threads": threads, "timing_threads": timing_threads,
                    "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TensorFlow's default)")},
                   dict(frameworks))

    def __getitem__(self, name: str) -> Any:
        return self.values.get(name)

    def to_json(self) -> dict[str, Any]:
        return {**{k.name: self.values.get(k.name) for k in KEYS},
                "frameworks": {n: {"available": f.available, "version": f.version, "devices": list(f.devices),
                                   "device_names": dict(f.device_names), "reason": f.reason}
                               for n, f in self.frameworks.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Environment:
        """The stored form read back; a run stored before a key existed has None there."""
        frameworks = {n: FrameworkInfo(bool(f.get("available")), f.get("version"), tuple(f.get("devices", ())),
                                       dict(f.get("device_names", {})), f.get("reason"))
                      for n, f in data.get("frameworks", {}).items()}
        return cls({k.name: k.read(data) for k in KEYS}, frameworks)

    def lines(self) -> list[str]:
        """The environment as a reader sees it: one line per known key, one per framework."""
        lines = [f"{k.label}: {self.values[k.name]}" for k in KEYS if self.values.get(k.name) is not None]
        return lines + [info.line(name) for name, info in sorted(self.frameworks.items())]


def describe_frameworks(names: Sequence[str]) -> dict[str, FrameworkInfo]:
    """What each framework offers here. A sweep runs this in a worker, so its parent
    imports no framework; the CLI lists it."""
    info: dict[str, FrameworkInfo] = {}
    for name in names:
        try:
            adapter = adapters.load(name)
        except adapters.FrameworkUnavailable as exc:
            info[name] = FrameworkInfo(False, reason=str(exc))
            continue
        info[name] = FrameworkInfo(
            True, adapter.version(), tuple(adapter.devices()),
            {device: adapter.device_name(device) or cpu_model() for device in adapter.devices()},
            impls={loss: tuple(adapter.impl_names(loss)) for loss in registry.names()}, modes=tuple(adapter.modes))
    return info
