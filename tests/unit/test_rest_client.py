"""tunecb's MLflow REST client against a small real HTTP server on loopback (the real
MLflow server is in tests/e2e/test_mlflow.py): credentials in a header and never in a
message, a kept-alive connection the server dropped, refusals, MLflow's batch limits,
timeouts; and which URIs it serves."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tunecb.tracking.client import Metric, uses_rest
from tunecb.tracking.mlflow_tracker import MlflowTracker, reason
from tunecb.tracking.rest_client import RestClient, RestError


class Server:
    """Answers MLflow's endpoints from ``answers`` (path -> (status, body)); records each
    request as ``(method, path, headers, JSON body)``; ``drop``: close every connection
    after its answer without saying so (as a server whose keep-alive timed out);
    ``hangups``: close that many connections without answering."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict, dict]] = []
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.connections, self.drop, self.delay, self.hangups = 0, False, 0.0, 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                owner.connections += 1

            def _answer(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(size) if size else b""
                body = json.loads(raw) if raw and self.command != "PUT" else {}
                path = self.path.split("?")[0]
                owner.requests.append((self.command, self.path, dict(self.headers), body))
                if owner.hangups:  # gone before answering (the race with an idle timeout)
                    owner.hangups -= 1
                    self.close_connection = True
                    return
                time.sleep(owner.delay)
                status, data = owner.answers.get(path, (200, b"{}"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                self.close_connection = owner.drop

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server():
    running = Server()
    yield running
    running.close()


def test_the_uri_s_credentials_go_in_a_header_and_never_in_a_message(server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")  # the URI's user and password win
    uri = server.url.replace("http://", "http://me:s%40cret@")
    server.answers["/api/2.0/mlflow/runs/get"] = (
        403, b'{"error_code": "PERMISSION_DENIED", "message": "no"}',
    )  # fmt: skip
    client = RestClient(uri)
    with pytest.raises(RestError) as refused:
        client.get_run("r1")
    (_, path, headers, _) = server.requests[0]
    assert path == "/api/2.0/mlflow/runs/get?run_id=r1"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"me:s@cret").decode()
    line = reason(refused.value, uri)
    assert line == "PERMISSION_DENIED: no" and "cret" not in line


def test_mlflow_s_variables_give_a_password_or_a_token(server, monkeypatch):
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.mlflow/credentials
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")
    RestClient(server.url).set_tag("r", "k", "v")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "u")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "p")
    RestClient(server.url).set_tag("r", "k", "v")
    auth = [headers["Authorization"] for _, _, headers, _ in server.requests]
    assert auth == ["Bearer tok", "Basic " + base64.b64encode(b"u:p").decode()]
    assert server.requests[0][3] == {"run_id": "r", "key": "k", "value": "v"}


def test_one_connection_is_kept_and_one_the_server_dropped_is_opened_again(server):
    client = RestClient(server.url)
    for _ in range(3):
        client.set_tag("r", "k", "v")
    assert server.connections == 1  # kept alive
    server.drop = True  # closed after each answer, unannounced (an idle timeout)
    for _ in range(3):
        client.set_tag("r", "k", "v")
        time.sleep(0.05)
    assert len(server.requests) == 6 and server.connections == 3  # then a new one each


def test_a_kept_connection_lost_before_the_answer_is_tried_once_more_on_a_new_one(server):
    client = RestClient(server.url)
    client.set_tag("r", "k", "v")
    server.hangups = 1
    client.set_tag("r", "k", "v")  # sent again on a new connection: no error
    assert len(server.requests) == 3 and server.connections == 2
    client.close()
    server.hangups = 1  # a new connection that fails is not tried again
    with pytest.raises(ConnectionError):
        client.set_tag("r", "k", "v")


def test_a_refusal_without_json_and_a_missing_run(server):
    server.answers["/api/2.0/mlflow/runs/update"] = (502, b"<html>\nBad gateway</html>")
    server.answers["/api/2.0/mlflow/runs/get"] = (
        404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run x not found"}',
    )  # fmt: skip
    client = RestClient(server.url)
    with pytest.raises(RestError, match=r"^HTTP 502: <html>$"):
        client.update_run("x", "FINISHED")
    assert client.get_run("x") is None
    assert "end_time" in server.requests[0][3]  # a final status ends the run


def test_a_batch_is_split_within_mlflow_s_limits(server):
    metrics = [Metric("loss", 1.0, 0, step) for step in range(2500)]
    params = {f"p{i}": str(i) for i in range(150)}
    tags = {f"t{i}": "x" for i in range(30)}
    RestClient(server.url).log_batch("r", metrics, params, tags)
    bodies = [body for _, _, _, body in server.requests]
    for body in bodies:
        assert len(body["params"]) <= 100 and len(body["tags"]) <= 100
        assert len(body["metrics"]) + len(body["params"]) + len(body["tags"]) <= 1000
    assert sorted(m["step"] for b in bodies for m in b["metrics"]) == list(range(2500))
    assert sum(len(b["params"]) for b in bodies) == 150 and len(bodies) == 3


def test_a_server_that_does_not_answer_fails_in_its_timeout(server, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "0.3")
    server.delay = 2.0
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        MlflowTracker(server.url, "e", RestClient(server.url)).experiment_id()
    assert time.monotonic() - started < 1.5


def test_an_artifact_goes_through_the_server_s_proxy(server, tmp_path):
    server.answers["/prefix/api/2.0/mlflow/runs/get"] = (200, json.dumps({"run": {"info": {
        "run_id": "r", "experiment_id": "1", "artifact_uri": "mlflow-artifacts:/1/r/artifacts",
    }}}).encode())  # fmt: skip
    (tmp_path / "best.keras").write_bytes(b"model")
    RestClient(server.url + "/prefix").log_artifact("r", str(tmp_path / "best.keras"), "checkpoint")
    method, path, headers, _ = server.requests[-1]
    assert method == "PUT" and headers["Content-Length"] == "5"
    assert path == "/prefix/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/checkpoint/best.keras"


@pytest.mark.parametrize(
    ("uri", "env", "rest"),
    [
        ("https://h/mlflow", {}, True),
        ("sqlite:///m.db", {}, False),
        ("databricks", {}, False),
        ("/tmp/mlruns", {}, False),
        ("http://h:5000", {"MLFLOW_TRACKING_AUTH": "plugin"}, False),
    ],
)
def test_the_rest_client_serves_http_servers_without_mlflow_s_auth_plugins(
    uri, env, rest, monkeypatch
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert uses_rest(uri) is rest
