from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli import main
from exporter.config.load import load, load_text
from exporter.config.problems import ConfigError
from exporter.config.schema import parse_duration

REPO = Path(__file__).resolve().parent.parent
BAD_CONFIGS = sorted((REPO / "tests" / "testdata" / "config" / "bad").glob("*.yaml"))


def expected_problems(path: Path) -> list[str]:
    return [
        line.removeprefix("# expect: ")
        for line in path.read_text().splitlines()
        if line.startswith("# expect: ")
    ]


@pytest.mark.parametrize("path", BAD_CONFIGS, ids=[path.stem for path in BAD_CONFIGS])
def test_bad_config_reports_every_problem_with_its_path(path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_text(path.read_text(), source=path.name)
    assert raised.value.problems == expected_problems(path)


@pytest.mark.parametrize("path", BAD_CONFIGS, ids=[path.stem for path in BAD_CONFIGS])
def test_config_check_prints_one_line_per_problem_and_exits_1(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(path.parent)
    assert main(["--config.check", "--config.file", path.name]) == 1
    assert capsys.readouterr().err.splitlines() == expected_problems(path)


def test_example_config_loads_with_defaults_applied() -> None:
    config = load(str(REPO / "config.example.yaml"))
    customers, partners = config.pools
    assert (customers.id, customers.name, customers.region) == (
        "eu-west-1_AbCdEf123",
        "customers",
        "eu-west-1",
    )
    assert customers.credentials == "default"
    assert customers.labels == (("team", "identity"),)
    assert partners.region == "us-east-1"
    assert (customers.page_size, customers.max_listed_jobs) == (60, 100_000)
    assert config.scrape.timeout == 25.0
    assert config.scrape.full_resync_interval == 600.0
    assert config.scrape.max_staleness == 300.0
    assert config.credentials["prod"].duration == 3600.0


def test_config_check_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config.check", "--config.file", str(REPO / "config.example.yaml")]) == 0
    assert "valid, 2 pools" in capsys.readouterr().out


def test_an_empty_file_is_a_valid_config_with_no_pools() -> None:
    config = load_text("")
    assert config.pools == ()
    assert config.scrape.max_concurrency == 16
    assert "default" in config.credentials


def test_pool_region_comes_from_the_pool_then_its_id_then_the_defaults() -> None:
    config = load_text(
        """
        defaults: {region: ap-south-1}
        pools:
          - {id: us-east-2_AbC1, region: eu-central-1}
          - {id: us-east-2_AbC2}
          - {id: local_AbC3}
        """
    )
    assert [pool.region for pool in config.pools] == ["eu-central-1", "us-east-2", "ap-south-1"]


def test_environment_references_are_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTER_TEST_POOL", "eu-west-1_FromEnv1")
    config = load_text(
        """
        defaults: {page_size: "${EXPORTER_TEST_PAGE_SIZE:-25}"}
        pools: [{id: "${EXPORTER_TEST_POOL}", name: "pool ${EXPORTER_TEST_UNSET:-default}"}]
        """
    )
    assert config.pools[0].id == "eu-west-1_FromEnv1"
    assert config.pools[0].name == "pool default"
    assert config.pools[0].page_size == 25


def test_secret_files_are_read_and_secrets_stay_out_of_errors(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("wJalrXUtnFEMI-planted-secret\n")
    config = load_text(
        f"""
        credentials:
          static: {{access_key_id: AKIAEXAMPLE, secret_access_key_file: {secret_file}}}
        """
    )
    secret = config.credentials["static"].secret_access_key
    assert secret is not None
    assert secret.get_secret_value() == "wJalrXUtnFEMI-planted-secret"
    assert "planted" not in repr(config)

    with pytest.raises(ConfigError) as raised:
        load_text(
            """
            credentials:
              broken: {secret_access_key: wJalrXUtnFEMI-planted-secret, session_token: 5}
            """
        )
    assert "planted" not in str(raised.value)
    assert raised.value.problems == ["credentials.broken.session_token: expected a string"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), (42, 42.0), ("7.5", 7.5)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_unreadable_config_file_is_one_clean_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as raised:
        load(str(missing))
    assert raised.value.problems == [f"{missing}: cannot read: No such file or directory"]
