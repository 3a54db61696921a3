from __future__ import annotations

import gzip
import time
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from exporter.app import Runtime
from exporter.collect.collector import ImportJobsCollector
from exporter.collect.history import ScanOutcome
from exporter.collect.scraper import Scraper, Snapshot
from exporter.collect.served import PoolResult
from exporter.config.load import load_text
from exporter.web.routes import ExporterApp, scrape_budget
from tests.jobs import job
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


def test_exporter_metrics_serve_the_exporters_own_without_a_collection(app: ExporterApp) -> None:
    status, _, body = call(app, "/exporter-metrics")
    own = body.decode()
    assert status == 200
    assert 'cognito_user_import_exporter_build_info{version="0.1.0"} 1.0' in own
    # no collection: no pool series, and no request was sent for one
    assert "cognito_user_import_scrape_success" not in own
    assert 'api_requests_total{operation="ListUserImportJobs"}' not in own
    full = call(app, "/metrics")[2].decode()
    assert "cognito_user_import_scrape_success" in full
    after = call(app, "/exporter-metrics")[2].decode()
    # the /metrics scrape's attempts, and its connection error, now show on both
    assert 'cognito_user_import_api_requests_total{operation="ListUserImportJobs"}' in after
    assert 'cognito_user_import_api_errors_total{error_code="ConnectionError"' in after
    assert "cognito_user_import_jobs{" not in after


@pytest.mark.parametrize(
    ("path", "method", "status", "allow"),
    [
        ("/nope", "GET", 404, None),
        ("/metrics", "POST", 405, "GET, HEAD"),
        ("/exporter-metrics", "POST", 405, "GET, HEAD"),
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
    [
        (None, 25.0),
        ("10", 9.5),
        ("60", 25.0),
        ("0.2", 0.0),
        ("soon", 25.0),
        ("nan", 25.0),
        # sent twice, the field lines are joined by commas (RFC 9110 5.3): the smallest counts
        ("1,1", 0.5),
        ("10, 4", 3.5),
        ("soon, 10", 9.5),
        ("inf", 25.0),
    ],
)
def test_scrape_budget(header: str | None, budget: float) -> None:
    assert scrape_budget(header, 25.0, 0.5) == budget


class HangingScraper:
    """A scraper whose collection takes all the time it is given, then answers for
    `pools` pools with ten recent jobs each (several MB of exposition)."""

    def __init__(self, pools: int) -> None:
        config = load_text(
            "defaults: {credentials: t, region: eu-west-1}\n"
            "credentials: {t: {access_key_id: AKIAEXAMPLE, secret_access_key: not-real}}\n"
            f"pools: [{', '.join(f'{{id: eu-west-1_Big{index}}}' for index in range(pools))}]\n"
        )
        recent = tuple(job(index) for index in range(10))
        outcome = ScanOutcome(
            {"Succeeded": 10},
            {"imported": 100, "skipped": 10, "failed": 0},
            recent,
            1,
            0,
            True,
            (),
            False,
        )
        self.results = tuple(
            PoolResult(pool, 0.1, outcome=outcome, recent_jobs=recent) for pool in config.pools
        )

    def collect(self, deadline: float, arrived: float) -> Snapshot:
        time.sleep(max(0.0, deadline - time.monotonic()))
        return Snapshot(self.results, complete=True)


@pytest.mark.slow
def test_a_large_answer_is_written_within_the_scrape_timeout() -> None:
    config = load_text(
        """
        defaults: {endpoint_url: "http://127.0.0.1:9", credentials: test}
        credentials: {test: {access_key_id: AKIAEXAMPLE, secret_access_key: not-real}}
        scrape: {timeout: 3s}
        pools: [{id: eu-west-1_Unused1}]
        """
    )
    runtime = Runtime(lambda: config)
    runtime.apply(config)
    scraper = HangingScraper(1000)
    runtime.registry = CollectorRegistry(auto_describe=False)
    runtime.registry.register(ImportJobsCollector(lambda: cast(Scraper, scraper), lambda: 3.0))
    app = ExporterApp(runtime, timeout_offset=0.0)
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": "3"}
    took = []
    for _ in range(3):
        started = time.monotonic()
        status, _, body = call(app, "/metrics", headers=headers)
        took.append(time.monotonic() - started)
        assert status == 200
        assert body.count(b"cognito_user_import_scrape_success{") == 1000
    # the first answer shows how long writing takes; later ones keep that time back
    print(f"answers took {took}")
    assert took[0] > 3.2
    assert max(took[1:]) < 3.0
    runtime.close()
