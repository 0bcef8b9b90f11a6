"""Shared helpers: random values spread over a dtype's whole exponent range,
skipping what needs a framework this installation lacks, and running a script in
a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness import adapters
from harness.model.dtypes import NUMPY_DTYPES as DTYPES
from reference.formats import FORMATS


def wide_values(rng: np.random.Generator, dtype: str, count: int) -> np.ndarray:
    """Floats of ``dtype`` (as float64) with random signs, significands and exponents
    from the subnormal range to near the top, so rounding paths all get exercised."""
    fmt = FORMATS[dtype]
    low, high = fmt.emin - fmt.precision + 1, fmt.emax - 2
    exponents = rng.integers(low, high, size=count)
    values = rng.choice([-1.0, 1.0], size=count) * rng.uniform(1.0, 2.0, size=count) * np.exp2(exponents.astype(float))
    return values.astype(DTYPES[dtype]).astype(np.float64)


@pytest.fixture(params=list(FORMATS))
def dtype(request: pytest.FixtureRequest) -> str:
    return request.param


def need(framework: str) -> None:
    """Skip the calling test when ``framework`` is not available here."""
    try:
        adapters.load(framework)
    except adapters.FrameworkUnavailable as exc:
        pytest.skip(str(exc))


ROOT = Path(__file__).resolve().parent.parent


def script_result(script: str, **env: str | None) -> Any:
    """What ``script`` prints as JSON on its last line, run by a fresh Python process
    with the repository importable (a framework's process-wide state, its compile
    caches and settings, starts clean there); ``env`` sets variables, None removes one."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=environment)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
