"""Who may reach the server: loopback binding, access token, Host header, configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aura_otel.errors import ConfigurationError
from aura_otel.server import create_app, is_loopback_host, run
from aura_otel.server.security import TOKEN_COOKIE, check_bind, host_name

from ..server_support import REFERENCE, free_port, live_server, put_example

TOKEN = "s3cret-token-for-tests"
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jobs")
    put_example(root, REFERENCE, "job-abc123")
    return root


@pytest.fixture(scope="module")
def guarded(jobs_dir: Path) -> Iterator[str]:
    with live_server(jobs_dir, access_token=TOKEN) as base:
        yield base


# -- binding rules -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost", "LOCALHOST"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)
    check_bind(host, None)  # allowed without a token


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", ""])
def test_non_loopback_without_token_refuses_to_start(host: str, jobs_dir: Path) -> None:
    assert not is_loopback_host(host)
    with pytest.raises(ConfigurationError, match="access token"):
        run(jobs_dir=jobs_dir, host=host, port=free_port())
    check_bind(host, TOKEN)  # with a token it is allowed


def test_empty_token_is_a_configuration_error(jobs_dir: Path) -> None:
    with pytest.raises(ConfigurationError):
        check_bind("0.0.0.0", "   ")
    with pytest.raises(ConfigurationError):
        create_app(jobs_dir, access_token="")


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://jaeger", "jaeger:16686", "http://"])
def test_bad_jaeger_url_is_a_configuration_error(jobs_dir: Path, url: str) -> None:
    with pytest.raises(ConfigurationError):
        create_app(jobs_dir, jaeger_url=url)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8765", "127.0.0.1"),
        ("[::1]:80", "::1"),
        ("localhost", "localhost"),
        ("evil.example:80", "evil.example"),
    ],
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


# -- Host header (DNS rebinding) -----------------------------------------------------------------
def test_without_token_only_loopback_host_headers_are_served(jobs_dir: Path) -> None:
    with live_server(jobs_dir) as base, httpx.Client(base_url=base) as http:
        assert http.get("/api/telemetry/job-abc123").status_code == 200
        assert (
            http.get("/api/telemetry/job-abc123", headers={"Host": "localhost:1"}).status_code
            == 200
        )
        rebound = http.get("/api/telemetry/job-abc123", headers={"Host": "evil.example"})
        assert rebound.status_code == 400
        assert "Host" in rebound.json()["detail"]
        assert http.get("/jobs", headers={"Host": "evil.example"}).status_code == 400


# -- access token --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/api/telemetry/job-abc123",
        "/api/jobs",
        "/api/telemetry/schema",
        "/api/openapi.json",
        "/static/app.css",
        "/jobs",
        "/jobs/job-abc123/telemetry",
        "/api/telemetry/nope",
    ],
)
def test_every_request_needs_the_token(guarded: str, path: str) -> None:
    with httpx.Client(base_url=guarded) as http:
        refused = http.get(path)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        for secret in ("OpenAI", "0.09", "Image generation", "job-abc123", "stage-table"):
            assert secret not in refused.text  # nothing of the jobs leaks before the token
        wrong = http.get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = http.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == (404 if path.endswith("/nope") else 200)


def test_api_refusal_is_a_problem_object(guarded: str) -> None:
    body = httpx.get(f"{guarded}/api/jobs").json()
    assert body["status"] == 401 and body["title"] == "Unauthorized" and body["correlationId"]


def test_browser_login_by_query_token_sets_a_cookie(guarded: str) -> None:
    with httpx.Client(base_url=guarded) as http:
        response = http.get("/jobs/job-abc123/telemetry", params={"token": TOKEN, "sort": "cost"})
        assert response.status_code == 303
        assert response.headers["location"] == "/jobs/job-abc123/telemetry?sort=cost"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{TOKEN_COOKIE}=") and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        page = http.get("/jobs/job-abc123/telemetry")  # the cookie now signs every request in
        assert page.status_code == 200 and "Run Details" in page.text
        assert http.get("/static/app.js").status_code == 200
    bad = httpx.get(f"{guarded}/jobs", params={"token": "wrong"})
    assert bad.status_code == 401 and "set-cookie" not in bad.headers


def test_the_login_redirect_returns_to_the_very_address(tmp_path: Path) -> None:
    """A job id holding a percent escape ("promo%20off") comes back as that job, not as the
    job its decoded text names ("promo off"); and the target never leaves this server."""
    put_example(tmp_path, REFERENCE, "promo%20off")
    put_example(tmp_path, REFERENCE, "promo off")
    with live_server(tmp_path, access_token=TOKEN) as base, httpx.Client(base_url=base) as http:
        login = http.get(f"/jobs/promo%2520off/telemetry?sort=cost&token={TOKEN}")
        assert login.status_code == 303
        assert login.headers["location"] == "/jobs/promo%2520off/telemetry?sort=cost"
        page = http.get(login.headers["location"])
        assert page.status_code == 200 and "promo%20off" in page.text
        elsewhere = httpx.get(f"{base}//evil.example/x?token={TOKEN}")  # no cookie yet
        assert elsewhere.status_code == 303
        assert elsewhere.headers["location"] == "/evil.example/x"


def test_a_token_in_the_address_is_always_traded_for_the_cookie(guarded: str) -> None:
    """Opening a bookmarked ``?token=`` link while already signed in still takes the token out
    of the address bar and history: it is never served a page with the token in its URL."""
    with httpx.Client(base_url=guarded) as http:
        assert http.get("/jobs", params={"token": TOKEN}).status_code == 303  # signs in
        again = http.get("/jobs", params={"token": TOKEN, "q": "abc"})
        assert again.status_code == 303 and again.headers["location"] == "/jobs?q=abc"
        with_bearer = httpx.get(
            f"{guarded}/api/jobs",
            params={"token": TOKEN},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert with_bearer.status_code == 303 and with_bearer.headers["location"] == "/api/jobs"


def test_guarded_server_answers_any_host_name(guarded: str) -> None:
    response = httpx.get(
        f"{guarded}/api/jobs",
        headers={"Authorization": f"Bearer {TOKEN}", "Host": "studio.internal:8765"},
    )
    assert response.status_code == 200


# -- run(): the real entry point -----------------------------------------------------------------
def test_run_serves_with_a_token(jobs_dir: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    code = (
        f"from aura_otel.server import run; run(jobs_dir={str(jobs_dir)!r}, host='127.0.0.1', "
        f"port={port}, access_token={TOKEN!r})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"{base}/api/jobs", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(
                        proc.stdout.read().decode() if proc.stdout else "no output"
                    ) from None
                time.sleep(0.1)
        assert response.status_code == 401
        ok = httpx.get(f"{base}/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.json()["items"][0]["jobId"] == "job-abc123"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
