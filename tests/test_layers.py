"""The layers run one way (foundation -> devices -> machine -> trainer -> application),
checked by import-linter's contracts in setup.cfg, and every package imports first."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept():
    from importlinter.cli import lint_imports
    assert lint_imports(config_filename=str(ROOT / "setup.cfg"), no_cache=True) == 0


@pytest.mark.parametrize("module", ["devsim", "devices", "trainer", "devsim.params",
                                    "devsim.layers", "devices.crossbar", "devices.mcu",
                                    "devices.mcu_conv", "trainer.base", "trainer.loop",
                                    "devsim.cli"])
def test_any_package_or_module_imports_first_in_a_fresh_interpreter(module):
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_public_api_is_imported_eagerly():
    import devsim
    assert not hasattr(devsim, "__getattr__")
    for name in devsim.__all__:
        assert name in vars(devsim), name
