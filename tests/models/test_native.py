"""The llama.cpp smoke check: the installed build decodes, and a missing or crashing native
library becomes a NativeLibraryError that names the library, the CPU and the fix instead
of a bare segfault. The crash is real: a ``libllama.so`` whose loader raises SIGSEGV."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentflow.errors import NativeLibraryError
from agentflow.models.native import smoke_check
from agentflow.models.registry import ModelFile
from agentflow.settings import Settings

pytestmark = pytest.mark.slow

_CRASH_C = """
#include <signal.h>
__attribute__((constructor)) static void crash_on_load(void) { raise(SIGSEGV); }
"""


@pytest.fixture(scope="module")
def crashing_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crashing-llama")
    source = folder / "crash.c"
    source.write_text(_CRASH_C)
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed to build the crashing library (gcc is on the image)"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-o", str(folder / "libllama.so"), str(source)], check=True
    )
    return folder


def _env(lib: Path) -> dict[str, str]:
    return {**os.environ, "LLAMA_CPP_LIB_PATH": str(lib)}


def test_the_installed_build_decodes_and_uses_no_amx(
    gguf_settings: Settings, gguf_model_file: ModelFile
) -> None:
    result = smoke_check(gguf_settings)

    assert result.tokens >= 1 and result.text.strip()
    # The default build is portable: AVX2/FMA/F16C and never the AMX kernels that crash.
    assert "AVX2 = 1" in result.system_info and "AMX" not in result.system_info
    assert result.library.endswith("lib")


def test_a_missing_native_library_is_a_clear_error(
    gguf_settings: Settings, gguf_model_file: ModelFile, tmp_path: Path
) -> None:
    with pytest.raises(NativeLibraryError) as err:
        smoke_check(gguf_settings, env=_env(tmp_path))

    text = str(err.value)
    assert str(tmp_path) in text and "while loading the library" in text
    assert "not found" in text and "CPU:" in text and "make install" in err.value.hint


def test_a_crashing_native_library_is_a_clear_error(
    gguf_settings: Settings, gguf_model_file: ModelFile, crashing_lib: Path
) -> None:
    with pytest.raises(NativeLibraryError) as err:
        smoke_check(gguf_settings, env=_env(crashing_lib))

    text = str(err.value)
    assert "crashed with SIGSEGV" in text and str(crashing_lib) in text
    assert "AGENTFLOW_GGUF_PATH" in err.value.hint


def test_the_install_step_stops_with_the_error_and_exit_1(
    gguf_settings: Settings, gguf_model_file: ModelFile, crashing_lib: Path
) -> None:
    """``make install`` runs ``agentflow models smoke``; so does this, as a child process."""
    env = _env(crashing_lib) | {"AGENTFLOW_DATA_DIR": str(gguf_settings.data_dir)}
    cli = Path(sys.executable).with_name("agentflow")
    out = subprocess.run(
        [str(cli), "models", "smoke"], env=env, capture_output=True, text=True, timeout=300
    )

    assert out.returncode == 1
    assert "crashed with SIGSEGV" in out.stderr and "fix:" in out.stderr
    assert "Traceback" not in out.stderr
