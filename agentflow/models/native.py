"""Is llama.cpp's native library usable on this CPU? Decode a few tokens in a child process.

A llama.cpp build can load fine and still die in ``llama_decode``: a native build on an
AMX (Sapphire Rapids) CPU segfaults on Q4_K weights (ggml-org/llama.cpp#20824), and a
wheel built on one CPU can use instructions another lacks. A segfault cannot be caught in
the process it happens in, so :func:`smoke_check` loads the verified GGUF and decodes in
a child, and turns a crash, a missing library or a hang into a
:class:`~agentflow.errors.NativeLibraryError` naming the library, the CPU and the fix.
``make install`` runs it (``agentflow models smoke``), ``agentflow models check`` includes
it, and the test suite runs it before the first test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow.errors import NativeLibraryError
from agentflow.models.registry import gguf_file
from agentflow.settings import Settings

__all__ = ["SmokeResult", "cpu_summary", "llama_library_dir", "smoke_check"]

_PROBE = r"""
import json, os, sys
def say(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()
say(stage="importing")
import llama_cpp
say(stage="imported", system_info=llama_cpp.llama_print_system_info().decode(errors="replace"))
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=int(sys.argv[2]), verbose=False)
say(stage="loaded")
out = llm.create_completion("The capital of France is", max_tokens=8, temperature=0.0)
say(stage="decoded", text=out["choices"][0]["text"], tokens=out["usage"]["completion_tokens"])
os._exit(0)  # the decode is what was asked; native destructors at exit are not
"""

# The instruction sets that decide whether a llama.cpp build runs here.
_FLAGS_OF_INTEREST = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)

_STAGE_WORDS = {
    "importing": "while loading the library",
    "imported": "while loading the model",
    "loaded": "while decoding (llama_decode)",
    "decoded": "after decoding",
}


@dataclass(frozen=True)
class SmokeResult:
    """A decode that worked."""

    library: str
    """Folder of the ``libllama`` that was loaded."""
    system_info: str
    """``llama_print_system_info()`` of that build: the instruction sets it uses."""
    cpu: str
    """This CPU's model name and the relevant flags it reports."""
    text: str
    """What the model wrote after "The capital of France is"."""
    tokens: int
    """Tokens decoded."""
    seconds: float
    """Wall time of the child process, model load included."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ok": True,
            "library": self.library,
            "system_info": self.system_info,
            "cpu": self.cpu,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 2),
        }


def llama_library_dir() -> str:
    """Where llama-cpp-python will load ``libllama`` from, found without importing it."""
    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    if override:
        return override
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return "(llama_cpp is not installed)"
    return str(Path(spec.origin).parent / "lib")


def cpu_summary() -> str:
    """``MODEL; flags: avx2 fma ...`` from /proc/cpuinfo (or what the platform says)."""
    model, flags = "", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        import platform

        model = platform.processor() or platform.machine()
    present = [f for f in _FLAGS_OF_INTEREST if f in flags]
    return f"{model or 'unknown CPU'}; flags: {' '.join(present) or 'none of interest'}"


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def smoke_check(
    settings: Settings | None = None,
    *,
    timeout_s: float = 180.0,
    env: dict[str, str] | None = None,
) -> SmokeResult:
    """Load the configured GGUF in a child process and decode 8 tokens.

    The GGUF is verified by sha256 here first (a missing or wrong file raises the usual
    model errors). ``env`` replaces the child's environment (tests point
    ``LLAMA_CPP_LIB_PATH`` elsewhere). Raises NativeLibraryError on a crash, an import
    failure, a hang past ``timeout_s`` or no tokens decoded.
    """
    settings = settings or Settings()
    model = gguf_file(settings)
    child_env = dict(os.environ if env is None else env)
    library = child_env.get("LLAMA_CPP_LIB_PATH") or llama_library_dir()
    cmd = [sys.executable, "-c", _PROBE, str(model.path), str(settings.n_threads)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",  # llama.cpp may print bytes that are not UTF-8
            timeout=timeout_s,
            env=child_env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout or ""
        out = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        stage, info = _progress(out)
        raise _error(
            f"did not finish {_STAGE_WORDS.get(stage, '')} in {timeout_s:.0f} s", library, info
        ) from None
    seconds = time.perf_counter() - start
    stage, info = _progress(proc.stdout)
    if proc.returncode < 0:
        what = f"crashed with {_signal_name(proc.returncode)} {_STAGE_WORDS.get(stage, '')}"
        raise _error(what, library, info)
    if proc.returncode != 0 or stage != "decoded":
        last = (proc.stderr.strip().splitlines() or ["no error output"])[-1]
        where = _STAGE_WORDS.get(stage, "")
        raise _error(f"failed {where} (exit {proc.returncode}): {last}", library, info)
    if int(info.get("tokens", 0)) < 1:
        raise _error("decoded no tokens", library, info)
    return SmokeResult(
        library=library,
        system_info=str(info.get("system_info", "")).strip(),
        cpu=cpu_summary(),
        text=str(info.get("text", "")),
        tokens=int(info["tokens"]),
        seconds=seconds,
    )


def _progress(stdout: str) -> tuple[str, dict[str, Any]]:
    """The last stage the child reached and everything it said on the way."""
    info: dict[str, Any] = {}
    stage = "importing"
    for line in stdout.splitlines():
        try:
            said = json.loads(line)
        except ValueError:
            continue
        if isinstance(said, dict):
            info.update(said)
            stage = str(said.get("stage", stage))
    return stage, info


def _error(what: str, library: str, info: dict[str, Any]) -> NativeLibraryError:
    build = str(info.get("system_info") or "").strip()
    amx = "AMX" in build
    message = f"llama.cpp's native library in {library} {what}. CPU: {cpu_summary()}." + (
        f" The library was built with: {build}" if build else ""
    )
    hint = (
        "rebuild llama-cpp-python portable (native CPU detection off, no AMX): "
        "`rm -rf .venv && make install` (the default LLAMA_NATIVE=0 builds it, cached by flags "
        "in ~/.cache/agentflow-wheels), or point AGENTFLOW_GGUF_PATH and "
        "AGENTFLOW_GGUF_SHA256 at another model"
    )
    if amx:
        hint = "this build uses AMX, whose Q4_K kernels crash (ggml-org/llama.cpp#20824); " + hint
    return NativeLibraryError(message, hint=hint)
