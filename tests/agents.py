"""A real `netcut-agent serve` process for tests, in an environment where importing torch fails."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def start_agent(tmp_path: Path, *args: str) -> subprocess.Popen:
    """The agent's server process (stdout: the URL line, then the token line unless a token file is given)."""
    shadow = tmp_path / "shadow" / "torch"
    shadow.mkdir(parents=True, exist_ok=True)
    (shadow / "__init__.py").write_text("raise ImportError('the agent imported torch')\n")
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    return subprocess.Popen([sys.executable, "-m", "netcut_agent.cli", "serve", *args], env=env, text=True,
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
