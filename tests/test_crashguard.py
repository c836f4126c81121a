"""A native crash in one test ends the run with a failure that names that test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_TESTS = """
import ctypes

def test_fine():
    assert 1 + 1 == 2

def test_native_crash():
    ctypes.string_at(0)  # reads address 0 in C: SIGSEGV, as a broken native library would

def test_never_reached():
    pass
"""


def _guarded(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    """``python -m tests.crashguard`` on one test file written to ``tmp_path``."""
    (tmp_path / name).write_text(text)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.crashguard",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / name),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_segfault_names_the_test_and_fails_the_run(tmp_path: Path) -> None:
    out = _guarded(tmp_path, "test_boom.py", _TESTS)
    assert out.returncode == 128 + 11, out.stdout + out.stderr
    assert (
        "FAILED test_boom.py::test_native_crash - the test process died with SIGSEGV" in out.stdout
    )
    assert out.stdout.rstrip().endswith("1 passed, 1 failed")


def test_a_normal_run_keeps_pytests_exit_code(tmp_path: Path) -> None:
    out = _guarded(tmp_path, "test_ok.py", "def test_ok():\n    assert True\n")
    assert out.returncode == 0 and "1 passed" in out.stdout
