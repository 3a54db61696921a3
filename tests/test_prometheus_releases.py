"""Which Prometheus a test gets: each release's binaries at their major version, or a skip that
becomes a failure under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import prometheus_releases
from tests.prometheus_releases import release_of


@pytest.mark.slow
def test_each_release_gives_binaries_of_its_major_version() -> None:
    for major in prometheus_releases.MAJOR_VERSIONS:
        release = release_of(major)
        assert release.major == major
        for binary in (release.prometheus, release.promtool):
            assert prometheus_releases.binary_version(binary).split(".")[0] == str(major)


def test_a_missing_release_skips_and_fails_under_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prometheus_releases, "PROMETHEUS3_BIN", tmp_path)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"run scripts/install/20-prometheus3\.sh"):
        release_of(3)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="prometheus is missing"):
        release_of(3)


def test_a_2x_binary_where_3x_is_expected_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    two = release_of(2)
    for binary in (two.prometheus, two.promtool):
        (tmp_path / Path(binary).name).symlink_to(binary)
    monkeypatch.setattr(prometheus_releases, "PROMETHEUS3_BIN", tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"Prometheus 3\.x wanted, but .* is 2\."):
        release_of(3)
