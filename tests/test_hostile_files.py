"""Hostile and unlucky files, for the config and the web config alike: bytes that are not
UTF-8, duplicate keys, alias bombs, deep nesting, special files and huge files. Each is one
clean problem, found with bounded work; nothing blocks, nothing runs out of memory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import trustme
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config.files import MAX_DEPTH, MAX_VALUES
from exporter.config.load import load
from exporter.config.model import Config
from exporter.config.problems import ConfigError
from exporter.web.webconfig import WebConfig, load_web_config

Loader = Callable[[str], Config | WebConfig]
CHEAP_HASH = bcrypt.hashpw(b"password", bcrypt.gensalt(4)).decode()
LOADERS: dict[str, Loader] = {"config": load, "web config": load_web_config}
ALIAS_BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)]
)


def problems_of(loader: Loader, path: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        loader(str(path))
    return raised.value.problems


@pytest.fixture(params=sorted(LOADERS))
def loader(request: pytest.FixtureRequest) -> Loader:
    return LOADERS[request.param]


def test_a_byte_that_is_not_utf8_is_one_line_with_its_offset(
    loader: Loader, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"pools: []\n# caf\xe9\n")
    assert problems_of(loader, path) == [f"{path}: not UTF-8 text at byte 15"]


def test_duplicate_keys_are_refused_with_their_path_and_lines(
    loader: Loader, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("http_server_config:\n  http2: true\n  http2: false\n")
    if loader is load:
        path.write_text("pools:\n  - id: eu-west-1_A1\npools:\n  - id: eu-west-1_B2\n")
        expected = ["pools: duplicate key at line 3 (first at line 1)"]
    else:
        expected = ["http_server_config.http2: duplicate key at line 3 (first at line 2)"]
    assert problems_of(loader, path) == expected


def test_an_alias_bomb_is_refused_before_it_expands(loader: Loader, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 600
    assert problems_of(loader, path) == [
        f"{path}: line 6: aliases expand to more than {MAX_VALUES:,} values"
    ]


def test_aliases_within_the_bound_still_work(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "pool: &pool {labels: {team: identity}}\n"
        "pools:\n"
        "  - {<<: *pool, id: eu-west-1_A1}\n"
        "  - {<<: *pool, id: eu-west-1_B2, labels: {team: payments}}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load(str(path))
    # the anchor's own key is not part of the schema; the pools that use it are fine
    assert raised.value.problems == ["pool: unknown key"]
    path.write_text(
        "defaults: &d {region: eu-west-1}\n"
        "discovery:\n  - {<<: *d, tags: {a: b}}\n  - {<<: *d, name_pattern: x}\n"
    )
    assert [entry.region for entry in load(str(path)).discovery] == ["eu-west-1", "eu-west-1"]


def test_deep_nesting_is_refused_without_recursion(loader: Loader, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("pools: " + "[" * 500 + "]" * 500 + "\n")
    [problem] = problems_of(loader, path)
    assert problem.startswith(f"{path}: not valid YAML: line 1, column ")
    assert problem.endswith(f": nested deeper than {MAX_DEPTH} levels")


def test_aliases_that_nest_deep_are_refused(loader: Loader, tmp_path: Path) -> None:
    levels = MAX_DEPTH // 2 + 2
    text = "a: &a " + "[" * levels + "]" * levels + "\n"
    text += "b: &b " + "[" * levels + "*a" + "]" * levels + "\n"
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert problems_of(loader, path) == [
        f"{path}: line 2: aliases nest deeper than {MAX_DEPTH} levels"
    ]


def test_a_recursive_alias_is_refused(loader: Loader, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("pools: &p [*p]\n")
    assert problems_of(loader, path) == [f"{path}: line 1: an alias refers to itself"]


@pytest.mark.parametrize(
    ("special", "kind"),
    [("/dev/zero", "a character device"), ("directory", "a directory"), ("fifo", "a FIFO")],
)
def test_only_regular_files_are_read(
    loader: Loader, tmp_path: Path, special: str, kind: str
) -> None:
    path = _special(tmp_path, special)
    assert problems_of(loader, path) == [f"{path}: is {kind}, not a regular file"]


@pytest.mark.parametrize(
    ("special", "kind"),
    [("/dev/zero", "a character device"), ("directory", "a directory"), ("fifo", "a FIFO")],
)
def test_secret_files_must_be_regular_files(tmp_path: Path, special: str, kind: str) -> None:
    path = _special(tmp_path, special)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"credentials: {{static: {{access_key_id: AKIAEXAMPLE, secret_access_key_file: {path}}}}}"
    )
    assert problems_of(load, config) == [
        f"credentials.static: secret_access_key_file: {path}: is {kind}, not a regular file"
    ]


def test_tls_files_must_be_regular_files(tmp_path: Path) -> None:
    fifo = _special(tmp_path, "fifo")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config: {{cert_file: {fifo}, key_file: /dev/zero}}\n")
    assert problems_of(load_web_config, web) == [
        f"tls_server_config.cert_file: {fifo}: is a FIFO, not a regular file",
        "tls_server_config.key_file: /dev/zero: is a character device, not a regular file",
    ]


def test_a_huge_secret_file_is_refused_unread(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    with secret.open("wb") as handle:
        handle.truncate(400 * 1024 * 1024)  # sparse: costs no disk
    config = tmp_path / "config.yaml"
    config.write_text(
        "credentials: {static: {access_key_id: AKIAEXAMPLE, "
        f"secret_access_key_file: {secret}}}}}\n"
    )
    assert problems_of(load, config) == [
        f"credentials.static: secret_access_key_file: {secret}: is larger than 64 KiB"
    ]


def test_a_huge_config_file_is_refused_unread(loader: Loader, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    with path.open("wb") as handle:
        handle.truncate(5 * 1024 * 1024)
    assert problems_of(loader, path) == [f"{path}: is larger than 4 MiB"]


def test_a_secret_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"\xff\xfe")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"credentials: {{r: {{role_arn: 'arn:aws:iam::1:role/x', external_id_file: {secret}}}}}"
    )
    assert problems_of(load, config) == [
        f"credentials.r: external_id_file: {secret}: not UTF-8 text at byte 0"
    ]


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_config_check_on_a_special_file_answers_at_once(tmp_path: Path, special: str) -> None:
    path = _special(tmp_path, special)
    checked = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", "--config.file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 1
    assert checked.stderr.count("\n") == 1
    assert "not a regular file" in checked.stderr
    assert "Traceback" not in checked.stderr


def test_config_check_on_bytes_that_are_not_utf8_exits_1_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    data = b"credentials: {s: {secret_access_key: PLANTED-\xff}}\n"
    path.write_bytes(data)
    checked = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", "--config.file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (checked.returncode, checked.stderr) == (
        1,
        f"{path}: not UTF-8 text at byte {data.index(0xFF)}\n",
    )
    assert checked.stdout == ""


def _special(tmp_path: Path, special: str) -> Path:
    if special == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
        return path
    if special == "directory":
        path = tmp_path / "directory"
        path.mkdir()
        return path
    return Path(special)


hostile_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda prefix, junk: prefix + junk,
        st.sampled_from([b"pools: ", b"defaults: {region: ", b"a: &a [", b"basic_auth_users: "]),
        st.binary(max_size=60),
    ),
    st.builds(lambda depth: b"pools: " + b"[" * depth + b"]" * depth, st.integers(0, 300)),
    st.builds(lambda text: text.encode("utf-8", "surrogatepass"), st.text(max_size=200)),
    st.builds(
        lambda document: yaml.safe_dump(document).encode(),
        st.recursive(
            st.one_of(st.none(), st.integers(), st.text(max_size=10)),
            lambda inner: st.one_of(
                st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=20,
        ),
    ),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=hostile_bytes)
def test_any_bytes_load_or_fail_cleanly(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzzed.yaml"
    path.write_bytes(data)
    for loader in LOADERS.values():
        problems = []
        try:
            loader(str(path))
        except ConfigError as error:
            problems = error.problems or [""]
        assert all(problem and "\n" not in problem for problem in problems)


def test_text_that_is_not_unicode_is_refused_with_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPORTER_TEST_STRAY_BYTE", "a\udcffb")  # a byte that is not UTF-8
    path = tmp_path / "config.yaml"
    path.write_text(
        "pools:\n  - {id: eu-west-1_A1, name: ok}\n"
        "  - {id: eu-west-1_B2, labels: {team: '${EXPORTER_TEST_STRAY_BYTE}'}}\n"
    )
    assert problems_of(load, path) == ["pools[1].labels.team: not valid Unicode text"]
    for loader in LOADERS.values():
        path.write_text('pools: [{id: eu-west-1_A1, name: "x\\uD800y"}]\n')
        assert problems_of(loader, path) == [
            f"{path}: not valid YAML: line 1, column 38: found invalid Unicode character escape "
            "code"
        ]


def test_binary_values_and_keys_are_refused(loader: Loader, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("credentials: {!!binary enp6: {}}\nrate_limit: !!binary enp6\n")
    assert problems_of(loader, path) == [
        "credentials: a key that is not text",
        "rate_limit: binary values are not allowed",
    ]


def test_a_long_text_repeated_by_aliases_is_refused_before_it_expands(
    loader: Loader, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    aliases = ",".join(["*a"] * 2000)
    path.write_text(f'x: &a "${{HOME}}{"A" * 1024 * 1024}"\ny: [{aliases}]\n')
    assert problems_of(loader, path) == [
        f"{path}: line 2: aliases expand to more than 16 MiB of text"
    ]


def test_a_file_of_too_many_values_is_refused_for_what_it_is(
    loader: Loader, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("x: [" + ",".join(["a"] * (MAX_VALUES + 1)) + "]\n")
    assert problems_of(loader, path) == [f"{path}: not valid YAML: more than {MAX_VALUES:,} values"]


def test_a_value_its_tag_cannot_hold_is_refused_at_its_line_without_echo(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "credentials:\n  s: {access_key_id: AKIA, secret_access_key: !!bool PLANTED-SECRET-1}\n"
    )
    [problem] = problems_of(load, path)
    assert problem == f"{path}: not valid YAML: line 2, column 47: a value that bool cannot hold"
    path.write_text("scrape: {max_concurrency: " + "9" * 5000 + "}\n")
    assert problems_of(load, path) == [
        f"{path}: not valid YAML: line 1, column 27: a value that int cannot hold"
    ]
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {admin: !!int $2b$04$PLANTEDHASH}\n")
    [problem] = problems_of(load_web_config, web)
    assert problem == f"{web}: not valid YAML: line 1, column 27: a value that int cannot hold"
    assert "PLANTED" not in problem


def test_a_number_too_large_for_any_setting_names_its_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("scrape: {timeout: " + "9" * 400 + ", requests_per_second: " + "9" * 30 + "}\n")
    assert problems_of(load, path) == [
        "scrape.timeout: a duration must be at most 366d",
        "scrape.requests_per_second: a number this large is not a setting",
    ]
    web = tmp_path / "web.yml"
    web.write_text("rate_limit: {interval: " + "9" * 400 + ", burst: 1}\n")
    assert problems_of(load_web_config, web) == [
        "rate_limit.interval: a duration must be at most 366d"
    ]


def test_a_nul_character_is_refused_at_its_position(loader: Loader, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"pools: []\n# \x00\n")
    assert problems_of(loader, path) == [
        f"{path}: not valid YAML: character 12: a control character YAML does not allow"
    ]


def test_what_a_message_quotes_never_breaks_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text('defaults: {credentials: "t\\nFORGED: valid, 9 pools"}\n')
    assert problems_of(load, path) == [
        'defaults.credentials: unknown credential set "t\\nFORGED: valid, 9 pools"'
    ]
    web = tmp_path / "web.yml"
    web.write_text(f'basic_auth_users: {{"bad:user\\nFORGED": "{CHEAP_HASH}"}}\n')
    problems = problems_of(load_web_config, web)
    assert all("\n" not in problem for problem in problems)
    assert "basic_auth_users.bad:user\\nFORGED: a user name cannot contain ':'" in problems


def test_a_default_cannot_hold_another_variable(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("pools: [{id: eu-west-1_A1, name: '${EXPORTER_TEST_UNSET:-${HOME}}'}]\n")
    assert problems_of(load, path)[0] == "pools[0].name: a default cannot hold another ${...}"


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("  \n")
    path = tmp_path / "config.yaml"
    path.write_text(
        f"credentials: {{s: {{access_key_id: AKIAEXAMPLE, secret_access_key_file: {secret}}}}}\n"
    )
    assert problems_of(load, path) == [f"credentials.s: secret_access_key_file: {secret} is empty"]


def test_a_bcrypt_cost_that_would_stall_every_login_is_refused(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {admin: $2b$31$" + "a" * 53 + "}\n")
    assert problems_of(load_web_config, web) == [
        "basic_auth_users.admin: a bcrypt cost from 4 to 16: each check of a higher cost takes "
        "seconds, and checks wait for each other"
    ]


def test_a_client_ca_that_is_no_certificate_is_one_problem(tmp_path: Path) -> None:
    authority = trustme.CA()
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config: {cert_file: server.pem, key_file: server.pem, "
        'client_auth_type: RequireAndVerifyClientCert, client_ca: "\\u00e9"}\n'
    )
    assert problems_of(load_web_config, web) == ["tls_server_config.client_ca: no PEM certificate"]
