"""The layers the folders show (pyproject.toml's import-linter contracts) hold,
and an upward import added on purpose breaks them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT, "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_every_layer_imports_only_downward() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_an_upward_import_breaks_the_contracts(tmp_path: Path) -> None:
    for name in ("harness", "reference"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    spec = tmp_path / "harness" / "model" / "spec.py"  # the loss model reaching up into the store
    spec.write_text(spec.read_text() + "\nfrom harness.store import rows  # noqa: E402,F401\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "Each layer imports only the layers below it BROKEN" in done.stdout
    assert "harness.model.spec -> harness.store" in done.stdout
