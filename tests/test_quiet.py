"""Quiet runs: TensorFlow's C++ start-up notices do not reach the terminal, the
setting they announce is recorded instead, and nothing that explains a failure
is swallowed."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import need
from harness.adapters.base import captured_stderr
from harness.measure.environment import Environment


def test_importing_tensorflow_prints_nothing() -> None:
    need("tensorflow")
    proc = subprocess.run([sys.executable, "-c", "import harness.adapters.tensorflow_adapter as t; "
                           "print(t.TensorFlowAdapter().settings()['oneDNN custom operations'])"],
                          capture_output=True, text=True, timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.strip() in ("on", "off")


def test_onednn_setting_is_recorded_in_the_run_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert "TF_ENABLE_ONEDNN_OPTS: 0" in Environment.collect({}, 1, 1, None).lines()
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    env = Environment.collect({}, 1, 1, None)
    assert Environment.from_json(env.to_json())["tf_enable_onednn_opts"] == "unset (TensorFlow's default)"


def test_captured_stderr_takes_what_c_code_writes() -> None:
    with captured_stderr() as found:
        os.write(2, b"from C\n")
    assert found.text == "from C\n"


def test_captured_stderr_passes_it_on_when_the_block_fails(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ImportError), captured_stderr():
        os.write(2, b"why it failed\n")
        raise ImportError("no such library")
    assert "why it failed" in capfd.readouterr().err
