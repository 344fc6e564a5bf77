"""`netcut-agent serve`, a real server process on 127.0.0.1 without PyTorch: it measures model files for whoever has
the token, refuses strangers, oversized bodies and anything that is not a model file, and keeps serving."""

from __future__ import annotations

import http.client
import io
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import start_agent
from netcut.latency.backends import get_backend
from tiny_models import Chain

pytestmark = [pytest.mark.agent, pytest.mark.runtime]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, bytes]:
    """A tiny trained-looking CNN converted by netcut to ONNX and TFLite."""
    torch.manual_seed(0)
    traced = torch.fx.symbolic_trace(Chain(num_classes=2).eval())
    example = torch.zeros(1, 3, 32, 32)
    return {fmt: get_backend(backend).convert(traced, example)
            for fmt, backend in (("onnx", "onnxruntime"), ("tflite", "litert"))}


BANNER: list[str] = []  # what `serve` printed first: where and on which device it serves, the runtimes it found


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    process = start_agent(tmp_path_factory.mktemp("agent"), "--port", "0", "--threads", "1", "--max-body-mb", "8")
    assert process.stdout is not None
    BANNER.append(process.stdout.readline())
    url = BANNER[0].split("serving on ")[1].split()[0]
    token = process.stdout.readline().split("token: ")[1].strip()
    BANNER.append(process.stdout.readline())  # the runtimes that start here
    yield url, token
    process.terminate()
    out, err = process.communicate(timeout=30)
    assert token not in out + err  # printed once at start, never again (logs, errors)


def call(url: str, path: str, token: str | None = None, body: bytes | None = None, method: str | None = None
         ) -> tuple[int, bytes]:
    request = urllib.request.Request(url + path, data=body, method=method or ("POST" if body is not None else "GET"))
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_health_needs_no_token_and_says_only_that_it_is_up(agent):
    url, _ = agent
    assert call(url, "/v1/health") == (200, b'{"status": "up"}')


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token"])
def test_strangers_are_refused(agent, models, token):
    url, _ = agent
    status, body = call(url, "/v1/measure?format=onnx", token, models["onnx"])
    assert status == 401 and "token" in json.loads(body)["error"]
    assert call(url, "/v1/device", token)[0] == 401


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_measures_a_model_file_with_the_token(agent, models, fmt):
    url, token = agent
    status, body = call(url, f"/v1/measure?format={fmt}&threads=1&repeats=5&warmup=1", token, models[fmt])
    assert status == 200, body
    reply = json.loads(body)
    assert 0 < reply["p50_ms"] <= reply["p90_ms"] <= reply["p99_ms"] and reply["n"] == 5
    assert reply["input_shape"] == [1, 3, 32, 32]  # read from the model itself
    env = reply["environment"]
    assert env["runtime"] == {"onnx": "onnxruntime", "tflite": "litert"}[fmt] and env["threads"] == 1 and env["cpu"]
    memory = reply["memory"]  # measured on the device in a fresh process of the runtime
    assert memory["peak_bytes"] > 0 and memory["load_ms"] > 0 and memory["first_ms"] > 0


@pytest.mark.parametrize("body, expected", [
    (b"\x80\x04\x95" + b"\x00" * 64, "pickles"),
    (b"PK\x03\x04" + b"\x00" * 64, "zip"),
    (b"\x08\x07garbage that is no protobuf", "cannot load"),
    (b"{}", "JSON"),
    (b"", "empty body"),
])
def test_anything_but_a_model_file_is_refused_and_the_agent_keeps_serving(agent, models, body, expected):
    url, token = agent
    status, reply = call(url, "/v1/measure?format=onnx&repeats=2", token, body)
    assert status == 400 and expected in json.loads(reply)["error"]
    assert call(url, "/v1/measure?format=onnx&repeats=2&warmup=0", token, models["onnx"])[0] == 200


def test_a_tflite_claimed_as_onnx_and_bad_parameters_are_400(agent, models):
    url, token = agent
    assert call(url, "/v1/measure?format=onnx", token, models["tflite"])[0] == 400
    assert call(url, "/v1/measure?format=pt", token, models["onnx"])[0] == 400
    assert call(url, "/v1/measure?format=onnx&threads=0", token, models["onnx"])[0] == 400
    assert call(url, "/v1/measure?format=onnx&shape=1,x", token, models["onnx"])[0] == 400


def test_an_oversized_body_is_413_before_it_is_read(agent):
    url, token = agent
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/v1/measure?format=onnx")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Length", str(64 * 2**20))  # over the 8 MB this agent accepts
    connection.endheaders()
    connection.send(b"\x08" * 1024)
    response = connection.getresponse()
    assert response.status == 413 and "at most" in json.loads(response.read())["error"]
    connection.close()
    assert call(url, "/v1/health")[0] == 200


def test_a_session_keeps_models_loaded_times_them_interleaved_and_runs_them(agent, models):
    url, token = agent
    status, body = call(url, "/v1/sessions?runtime=onnxruntime&threads=1", token, b"")
    assert status == 200, body
    session = json.loads(body)["session"]
    for name in ("a", "b"):
        assert call(url, f"/v1/sessions/{session}/models?name={name}", token, models["onnx"])[0] == 200
    config = {"timed": ["a", "b"], "config": {"warmup": 1, "repeats": 4}}
    status, body = call(url, f"/v1/sessions/{session}/time", token, json.dumps(config).encode())
    assert status == 200 and set(json.loads(body)["stats"]) == {"a", "b"}
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, x)
    status, body = call(url, f"/v1/sessions/{session}/run?name=a", token, buffer.getvalue())
    assert status == 200
    remote = np.load(io.BytesIO(body), allow_pickle=False)["arr_0"]
    import onnxruntime

    reference = onnxruntime.InferenceSession(models["onnx"], providers=["CPUExecutionProvider"])
    local = reference.run(None, {reference.get_inputs()[0].name: x})[0]
    assert np.abs(remote - local).max() < 1e-5
    assert call(url, f"/v1/sessions/{session}/run?name=a", token, b"\x80\x04not npy")[0] == 400
    status, body = call(url, f"/v1/sessions/{session}/memory", token, models["onnx"])
    assert status == 200 and json.loads(body)["memory"]["peak_bytes"] > 0
    status, body = call(url, f"/v1/sessions/{session}/memory", token, b"\x80\x04\x95" + b"\x00" * 64)
    assert status == 400 and b"pickle" in body
    assert call(url, f"/v1/sessions/{session}/time", token, json.dumps(config).encode())[0] == 200  # still serving
    assert call(url, f"/v1/sessions/{session}", token, method="DELETE")[0] == 200
    assert call(url, f"/v1/sessions/{session}/time", token, json.dumps(config).encode())[0] == 404


def test_binding_beyond_loopback_needs_a_flag_and_a_token_file_must_hold_a_token(tmp_path):
    process = start_agent(tmp_path, "--host", "0.0.0.0", "--port", "0")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "--allow-remote" in err and "Traceback" not in err
    short = tmp_path / "token"
    short.write_text("abc\n")
    process = start_agent(tmp_path, "--port", "0", "--token-file", str(short))
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "shorter than 16" in err


def test_a_token_file_is_used_and_not_printed(tmp_path, models):
    secret = tmp_path / "token"
    secret.write_text("a-long-enough-token-for-tests\n")
    process = start_agent(tmp_path, "--port", "0", "--token-file", str(secret), "--threads", "1")
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split("serving on ")[1].split()[0]
        assert call(url, "/v1/device", "a-long-enough-token-for-tests")[0] == 200
        assert call(url, "/v1/device", "another-token-of-some-length")[0] == 401
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    assert "a-long-enough-token" not in line + out


def test_two_clients_at_once_are_both_answered_one_after_the_other(agent, models):
    url, token = agent
    replies: list[tuple[int, bytes]] = []

    def client() -> None:
        replies.append(call(url, "/v1/measure?format=onnx&threads=1&repeats=40&warmup=2", token, models["onnx"]))

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [status for status, _ in replies] == [200, 200]
    first, second = sorted((json.loads(body)["job"] for _, body in replies), key=lambda j: j["started_unix"])
    assert first["finished_unix"] <= second["started_unix"]  # the measurements never overlapped


def test_model_names_are_names_not_paths(agent, models, tmp_path):
    url, token = agent
    session = json.loads(call(url, "/v1/sessions?runtime=onnxruntime&threads=1", token, b"")[1])["session"]
    target = tmp_path / "written-by-the-agent"
    for name in (str(target), "../../" + target.name):
        status, _ = call(url, f"/v1/sessions/{session}/models?name={urllib.parse.quote(name)}", token, models["onnx"])
        assert status == 200
    assert not target.exists() and not (Path.cwd().parent.parent / target.name).exists()
    call(url, f"/v1/sessions/{session}", token, method="DELETE")


def test_the_token_is_never_echoed(agent, models):
    url, token = agent
    wrong = token[::-1]
    status, body = call(url, "/v1/measure?format=onnx", wrong, models["onnx"])
    assert status == 401 and wrong not in body.decode() and token not in body.decode()
    status, body = call(url, "/v1/measure?format=onnx", token, b"\x80\x04 pickle")
    assert status == 400 and token not in body.decode()


def test_a_slow_client_is_dropped_and_others_are_served_meanwhile(tmp_path):
    """A client that opens a connection and stops sending holds one slot until the idle timeout, never the agent;
    beyond the connection bound, a newcomer is told 503 at once."""
    import socket
    import time

    process = start_agent(tmp_path, "--port", "0", "--threads", "1", "--idle-timeout", "1",
                          "--max-connections", "2")
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split("serving on ")[1].split()[0]
        host, port = urllib.parse.urlparse(url).hostname, urllib.parse.urlparse(url).port
        slow = socket.create_connection((host, port), timeout=30)
        slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line that ends the headers
        assert call(url, "/v1/health") == (200, b'{"status": "up"}')  # the other slot serves
        second_slow = socket.create_connection((host, port), timeout=30)
        second_slow.sendall(b"GET /v1/he")
        status, body = call(url, "/v1/health")  # accepted after both slow ones (one queue): no slot is left
        assert status == 503 and b"retry" in body
        # the idle timeout closes both slow connections: the server ends them (recv returns b"" at the close); the
        # second may instead have been told 503 at once, when the health call's slot was not yet freed as it came
        started = time.monotonic()
        assert slow.recv(4096) == b""
        rest = b""
        while chunk := second_slow.recv(4096):
            rest += chunk
        assert rest == b"" or rest.startswith(b"HTTP/1.1 503")
        assert time.monotonic() - started < 25
        deadline = time.monotonic() + 10  # a slot is freed just after its socket is closed
        while (answer := call(url, "/v1/health"))[0] == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert answer == (200, b'{"status": "up"}')
        slow.close()
        second_slow.close()
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_the_device_names_itself_and_the_runtimes_that_start_here(agent, models):
    from netcut_agent.identity import device_identity

    url, token = agent
    status, body = call(url, "/v1/device", token)
    device = json.loads(body)
    assert status == 200 and device["environment"]["cpu"] == device_identity()
    assert f"(device: {device_identity()})" in BANNER[0]
    found = {r["name"]: r for r in device["runtime_status"]}
    assert set(found) == {"onnxruntime", "litert", "openvino"}
    # the agent's test environment has ONNX Runtime and LiteRT, not OpenVINO (as a device that installed two extras)
    assert device["runtimes"] == ["litert", "onnxruntime"]
    assert found["onnxruntime"]["versions"]["onnxruntime"] and found["litert"]["versions"]["ai-edge-litert"]
    ort = found["onnxruntime"]["versions"]["onnxruntime"]
    assert BANNER[1].startswith("runtimes: litert ") and f"onnxruntime {ort}" in BANNER[1]
    assert not found["openvino"]["available"] and found["openvino"]["problem"] == "not installed"
    assert found["openvino"]["install"] == "pip install 'netcut-agent[openvino]'"
    # asking for it is a clear 400 naming the extra; the agent keeps serving
    status, body = call(url, "/v1/measure?format=onnx&runtime=openvino", token, models["onnx"])
    assert status == 400 and "netcut-agent[openvino]" in json.loads(body)["error"]
    status, body = call(url, "/v1/sessions?runtime=openvino", token, b"", method="POST")
    assert status == 400 and "not available on this device" in json.loads(body)["error"]
    assert call(url, "/v1/health")[0] == 200
