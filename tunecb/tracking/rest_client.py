"""MLflow's REST API 2.0 over ``http.client``, for ``http(s)://`` tracking URIs: the
requests of :class:`~.client.TrackingClient` without ``import mlflow`` (about 2 s of CPU
in every process that tracks).

One keep-alive connection per client (a client lives in one thread), opened again when
the server closed it while idle; a timeout on every request (``MLFLOW_HTTP_REQUEST_TIMEOUT``,
5 s unless set). Credentials: the URI's ``user:password@``, else ``MLFLOW_TRACKING_USERNAME``
and ``MLFLOW_TRACKING_PASSWORD`` (or ``~/.mlflow/credentials``), else
``MLFLOW_TRACKING_TOKEN``; they go in a header and never into a message. TLS:
``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH`` and
``MLFLOW_TRACKING_CLIENT_CERT_PATH``, as in MLflow. Artifacts go through the server's
artifact proxy (``mlflow-artifacts:`` artifact URIs, ``mlflow server``'s default); a run
whose artifacts live elsewhere (``--no-serve-artifacts``) is uploaded by MLflow's client.

>>> RestClient("http://user:pw@127.0.0.1:1/prefix/").url("runs/get")
'/prefix/api/2.0/mlflow/runs/get'
"""

from __future__ import annotations

import base64
import configparser
import getpass
import http.client
import json
import logging
import mimetypes
import os
import select
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from tunecb.tracking.client import Metric, Run

log = logging.getLogger("tunecb")

API = "/api/2.0/mlflow/"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/"
# MLflow's limits on one log-batch request
MAX_METRICS, MAX_PARAMS_TAGS, MAX_ENTITIES = 1000, 100, 1000
_FINAL = {"FINISHED", "FAILED", "KILLED"}
# A reused connection that fails this way was closed by the server while idle: the
# request did not reach it, and is sent again once on a new connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class RestError(Exception):
    """An MLflow server's refusal: ``"<error code>: <message>"`` (HTTP status in ``status``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code = status, code


def authorization(user: str | None, password: str | None) -> str | None:
    """The ``Authorization`` header: the URI's credentials, else MLflow's variables.

    >>> authorization("u", "p")
    'Basic dTpw'
    """
    if not user:
        user, password = _env_credentials()
    if user and password is not None:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return f"Bearer {token}" if token else None


def _env_credentials() -> tuple[str | None, str | None]:
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    path = Path("~/.mlflow/credentials").expanduser()
    if (user and password) or not path.is_file():
        return user, password
    config = configparser.ConfigParser()
    config.read(path)
    section = config["mlflow"] if config.has_section("mlflow") else {}
    return (
        user or section.get("mlflow_tracking_username"),
        password or section.get("mlflow_tracking_password"),
    )


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"))
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("true", "1"):
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        context.load_cert_chain(os.environ["MLFLOW_TRACKING_CLIENT_CERT_PATH"])
    return context


def _run(data: dict[str, Any]) -> Run:
    info = data.get("info", {})
    tags = {t["key"]: t.get("value", "") for t in data.get("data", {}).get("tags", [])}
    return Run(
        run_id=info["run_id"], experiment_id=str(info.get("experiment_id", "")),
        status=info.get("status", "RUNNING"), lifecycle_stage=info.get("lifecycle_stage", "active"),
        tags=tags, artifact_uri=info.get("artifact_uri", ""),
    )  # fmt: skip


def _pairs(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in values.items()]


class RestClient:
    """:class:`~.client.TrackingClient` on MLflow's REST API (one thread's)."""

    def __init__(self, uri: str) -> None:
        parts = urlsplit(uri)
        self.uri, self.https = uri, parts.scheme == "https"
        self.host, self.port = parts.hostname or "localhost", parts.port
        self.base = parts.path.rstrip("/")
        self.timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or 5)
        self.headers = {"Content-Type": "application/json", "User-Agent": "tunecb"}
        auth = authorization(unquote(parts.username or ""), unquote(parts.password or ""))
        if auth:
            self.headers["Authorization"] = auth
        self._conn: http.client.HTTPConnection | None = None
        self._artifact_uris: dict[str, str] = {}  # run id -> its artifact URI
        self._fallback: Any = None  # MLflow's client, for artifacts it alone can reach

    def url(self, endpoint: str) -> str:
        return f"{self.base}{API}{endpoint}"

    # -- the wire -------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=_tls()
            )  # fmt: skip
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _idle_closed(self) -> bool:
        """Whether the server closed the kept-alive connection (it reads as ready)."""
        sock = self._conn.sock if self._conn is not None else None
        if sock is None:
            return True
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def request(
        self, method: str, path: str, body: dict | Path | None = None,
        query: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """The JSON answer of one request (``body``: JSON, or a file to upload)."""
        target = path + (f"?{urlencode(query)}" if query else "")
        headers = {**self.headers, **(headers or {})}
        for attempt in (0, 1):
            if self._conn is not None and self._idle_closed():
                self.close()
            reused = self._conn is not None
            self._conn = self._conn or self._connect()
            try:
                status, data = self._exchange(method, target, body, headers)
                break
            except _STALE:
                self.close()
                if not reused or attempt:
                    raise
            except BaseException:
                self.close()
                raise
        if status >= 400:
            raise _refusal(status, data)
        return json.loads(data) if data.strip() else {}

    def _exchange(
        self, method: str, target: str, body: dict | Path | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        conn = self._conn
        assert conn is not None
        if isinstance(body, Path):
            headers["Content-Length"] = str(body.stat().st_size)
            with body.open("rb") as file:
                conn.request(method, target, body=file, headers=headers)
        else:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, target, body=data, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.will_close:
            self.close()
        return response.status, data

    def _get(self, endpoint: str, **query: Any) -> dict[str, Any]:
        return self.request("GET", self.url(endpoint), query=query)

    def _post(self, endpoint: str, **body: Any) -> dict[str, Any]:
        return self.request("POST", self.url(endpoint), body=body)

    # -- the client -----------------------------------------------------------------

    def experiment(self, name: str) -> tuple[str, str] | None:
        try:
            found = self._get("experiments/get-by-name", experiment_name=name)["experiment"]
        except RestError as exc:
            if exc.code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return str(found["experiment_id"]), found.get("lifecycle_stage", "active")

    def create_experiment(self, name: str) -> str:
        return str(self._post("experiments/create", name=name)["experiment_id"])

    def restore_experiment(self, experiment_id: str) -> None:
        self._post("experiments/restore", experiment_id=experiment_id)

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> Run:
        body = {
            "experiment_id": experiment_id, "run_name": name, "tags": _pairs(tags),
            "start_time": int(time.time() * 1000), "user_id": _user(),
        }  # fmt: skip
        run = _run(self._post("runs/create", **body)["run"])
        self._artifact_uris[run.run_id] = run.artifact_uri
        return run

    def get_run(self, run_id: str) -> Run | None:
        try:
            run = _run(self._get("runs/get", run_id=run_id)["run"])
        except RestError as exc:
            if exc.code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        self._artifact_uris[run.run_id] = run.artifact_uri
        return run

    def update_run(self, run_id: str, status: str) -> None:
        body: dict[str, Any] = {"run_id": run_id, "status": status}
        if status in _FINAL:
            body["end_time"] = int(time.time() * 1000)
        self._post("runs/update", **body)

    def log_batch(
        self, run_id: str, metrics: list[Metric], params: dict[str, str], tags: dict[str, str]
    ) -> None:
        rows = [m._asdict() for m in metrics]
        left_params, left_tags = _pairs(params), _pairs(tags)
        while rows or left_params or left_tags:
            some_params, left_params = left_params[:MAX_PARAMS_TAGS], left_params[MAX_PARAMS_TAGS:]
            some_tags, left_tags = left_tags[:MAX_PARAMS_TAGS], left_tags[MAX_PARAMS_TAGS:]
            room = min(MAX_METRICS, MAX_ENTITIES - len(some_params) - len(some_tags))
            some_rows, rows = rows[:room], rows[room:]
            self._post(
                "runs/log-batch", run_id=run_id, metrics=some_rows, params=some_params,
                tags=some_tags,
            )  # fmt: skip

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._post("runs/set-tag", run_id=run_id, key=key, value=value)

    def search_runs(
        self, experiment_id: str, query: str, max_results: int, page_token: str | None
    ) -> tuple[list[Run], str | None]:
        body: dict[str, Any] = {
            "experiment_ids": [experiment_id], "filter": query, "max_results": max_results,
        }  # fmt: skip
        if page_token:
            body["page_token"] = page_token
        found = self._post("runs/search", **body)
        return [_run(run) for run in found.get("runs", [])], found.get("next_page_token")

    def metric_steps(self, run_id: str, key: str) -> list[int]:
        steps: list[int] = []
        query: dict[str, Any] = {"run_id": run_id, "metric_key": key, "max_results": 25000}
        while True:
            found = self._get("metrics/get-history", **query)
            steps += [int(m.get("step", 0)) for m in found.get("metrics", [])]
            if not found.get("next_page_token"):
                return steps
            query["page_token"] = found["next_page_token"]

    def delete_run(self, run_id: str) -> None:
        self._post("runs/delete", run_id=run_id)

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None) -> None:
        """A PUT through the server's artifact proxy (``mlflow-artifacts:/...``)."""
        if run_id not in self._artifact_uris:
            self.get_run(run_id)
        root = urlsplit(self._artifact_uris.get(run_id, ""))
        if root.scheme != "mlflow-artifacts" or root.netloc:
            self._mlflow_fallback().log_artifact(run_id, path, artifact_path)
            return
        local = Path(path)
        parts = [root.path.strip("/"), (artifact_path or "").strip("/"), local.name]
        target = self.base + ARTIFACTS + quote("/".join(p for p in parts if p))
        kind = mimetypes.guess_type(local.name)[0] or "application/octet-stream"
        self.request("PUT", target, body=local, headers={"Content-Type": kind})

    def _mlflow_fallback(self) -> Any:
        """MLflow's own client (imported now): artifacts stored outside the server's proxy."""
        if self._fallback is None:
            from tunecb.tracking.mlflow_client import MlflowClientAdapter

            log.debug("MLflow: artifacts outside the server's proxy: using MLflow's client")
            self._fallback = MlflowClientAdapter(self.uri)
        return self._fallback


def _refusal(status: int, data: bytes) -> RestError:
    text = data.decode("utf-8", "replace")
    try:
        answer = json.loads(text)
        return RestError(status, answer.get("error_code", f"HTTP {status}"), answer["message"])
    except (ValueError, KeyError, TypeError, AttributeError):
        line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        line = line[:200] or http.client.responses.get(status, "")
        return RestError(status, f"HTTP {status}", line)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
