"""A real `netcut-agent serve` process for tests, from the agent's own virtual environment (.venv-agent: numpy, ONNX
Runtime and LiteRT; no PyTorch, no netcut), as a device would run it."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

AGENT_PYTHON = Path(__file__).resolve().parents[1] / ".venv-agent" / "bin" / "python"


def agent_python() -> str:
    """The agent environment's interpreter (`make test` builds it)."""
    if not AGENT_PYTHON.exists():
        pytest.fail(f"{AGENT_PYTHON} is missing: run `make agent-venv` (make test builds it)")
    return str(AGENT_PYTHON)


def start_agent(tmp_path: Path, *args: str) -> subprocess.Popen:
    """The agent's server process (stdout: the URL line, then the token line unless a token file is given)."""
    return subprocess.Popen([agent_python(), "-m", "netcut_agent.cli", "serve", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def free_port() -> int:
    """A port nothing listens on right now (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_with_token_file(tmp_path: Path, port: int, token: str = "a-long-enough-token-for-tests"
                          ) -> tuple[subprocess.Popen, str, Path]:
    """An agent on a given port reading its token from a file: (process, URL, token file)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    process = start_agent(tmp_path, "--port", str(port), "--token-file", str(token_file), "--threads", "1")
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "serving on" in line, process.stderr.read() if process.stderr else line
    return process, line.split("serving on ")[1].split()[0], token_file
