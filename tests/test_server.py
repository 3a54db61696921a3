from __future__ import annotations

import gzip

import pytest

from exporter.app import Runtime
from exporter.config.load import load_text
from exporter.web.routes import ExporterApp, scrape_budget
from tests.wsgi import call


@pytest.fixture
def app() -> ExporterApp:
    config = load_text(
        """
        defaults: {endpoint_url: "http://127.0.0.1:9", credentials: test}
        credentials: {test: {access_key_id: AKIAEXAMPLE, secret_access_key: planted-secret}}
        scrape: {timeout: 2s}
        pools: [{id: eu-west-1_Esc4pe1, name: "<script>alert(1)</script>"}]
        """
    )
    runtime = Runtime(lambda: config)
    runtime.apply(config)
    return ExporterApp(runtime)


def test_metrics_answers_200_even_when_the_pool_fails(app: ExporterApp) -> None:
    status, headers, body = call(app, "/metrics")
    text = body.decode()
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'cognito_user_import_scrape_success{user_pool_id="eu-west-1_Esc4pe1"} 0.0' in text
    assert 'cognito_user_import_exporter_build_info{version="0.1.0"} 1.0' in text
    assert "planted-secret" not in text


def test_openmetrics_and_gzip_are_negotiated(app: ExporterApp) -> None:
    status, headers, body = call(
        app,
        "/metrics",
        headers={
            "Accept": "application/openmetrics-text; version=1.0.0",
            "Accept-Encoding": "gzip",
        },
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body).decode().endswith("# EOF\n")


@pytest.mark.parametrize(
    ("path", "method", "status", "allow"),
    [
        ("/nope", "GET", 404, None),
        ("/metrics", "POST", 405, "GET, HEAD"),
        ("/-/reload", "GET", 405, "POST, PUT"),
        ("/-/healthy", "GET", 200, None),
        ("/-/ready", "GET", 200, None),
    ],
)
def test_routes_and_methods(
    app: ExporterApp, path: str, method: str, status: int, allow: str | None
) -> None:
    got_status, headers, _ = call(app, path, method)
    assert got_status == status
    assert headers.get("Allow") == allow


def test_head_has_no_body(app: ExporterApp) -> None:
    status, _, body = call(app, "/-/healthy", "HEAD")
    assert (status, body) == (200, b"")


def test_landing_page_escapes_names_and_makes_no_collection(app: ExporterApp) -> None:
    status, headers, body = call(app, "/")
    page = body.decode()
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page
    assert "not collected yet" in page
    call(app, "/metrics")
    after_scrape = call(app, "/")[2].decode()
    assert "<td class='fail'>failed</td><td>ConnectionError: " in after_scrape


@pytest.mark.parametrize(
    ("header", "budget"),
    [(None, 25.0), ("10", 9.5), ("60", 25.0), ("0.2", 0.0), ("soon", 25.0), ("nan", 25.0)],
)
def test_scrape_budget(header: str | None, budget: float) -> None:
    assert scrape_budget(header, 25.0, 0.5) == budget
