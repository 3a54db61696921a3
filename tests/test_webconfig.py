from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exporter.config.problems import ConfigError
from exporter.web.auth import BasicAuth, RateLimit
from exporter.web.certificate_expiry import CertificateExpiryCollector
from exporter.web.certificates import first_certificate_der, not_after
from exporter.web.exchange import Request
from exporter.web.front import Front
from exporter.web.routes import WsgiApp
from exporter.web.webconfig import WebConfig, load_web_config
from tests import web_server
from tests.tools import h2_get

PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
OTHER_HASH = bcrypt.hashpw(b"other password", bcrypt.gensalt(5)).decode()


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: str
    client: str
    other_san_client: str
    foreign_client: str
    foreign_ca: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and client certificates, in one folder."""
    folder = tmp_path_factory.mktemp("pki")
    ca, foreign_ca = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    foreign_ca.cert_pem.write_to_path(str(folder / "foreign-ca.pem"))
    servers = {
        "server": ca.issue_cert("127.0.0.1", "localhost"),
        "rotated": foreign_ca.issue_cert("127.0.0.1"),
    }
    for name, leaf in servers.items():
        for blob in leaf.cert_chain_pems:
            blob.write_to_path(str(folder / f"{name}.pem"), append=True)
        leaf.private_key_pem.write_to_path(str(folder / f"{name}.key"))
    server = servers["server"]
    ca.issue_cert("elsewhere.example").private_key_pem.write_to_path(str(folder / "other.key"))
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    (folder / "encrypted.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    (folder / "garbage.pem").write_text("not a certificate\n")
    clients = {
        "client.pem": ca.issue_cert("scraper.example"),
        "other-san-client.pem": ca.issue_cert("intruder.example"),
        "foreign-client.pem": foreign_ca.issue_cert("scraper.example"),
    }
    for name, cert in clients.items():
        cert.private_key_and_cert_chain_pem.write_to_path(str(folder / name))
    return Pki(
        dir=folder,
        ca=str(folder / "ca.pem"),
        client=str(folder / "client.pem"),
        other_san_client=str(folder / "other-san-client.pem"),
        foreign_client=str(folder / "foreign-client.pem"),
        foreign_ca=str(folder / "foreign-ca.pem"),
    )


def web_config(pki: Pki, name: str, text: str) -> WebConfig:
    path = pki.dir / f"{name}.yml"
    path.write_text(text)
    return load_web_config(str(path))


TLS = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n"

BAD_CONFIGS: list[tuple[str, str, list[str]]] = [
    (
        "unknown_keys",
        TLS + "  ciphers: [RC4]\nauth_excluded_paths: [/metrics]\n",
        ["tls_server_config.ciphers: unknown key", "auth_excluded_paths: unknown key"],
    ),
    (
        "bad_min_version",
        TLS + "  min_version: TLS14\n",
        ['tls_server_config.min_version: "TLS14" is not one of TLS10, TLS11, TLS12, TLS13'],
    ),
    (
        "old_tls_version",
        TLS + "  min_version: TLS10\n  max_version: TLS11\n",
        [
            f"tls_server_config.{key}: {value} cannot be honoured: Python's ssl module "
            "deprecates TLS 1.0 and 1.1 and OpenSSL 3 refuses them at its default security "
            "level; use TLS12 or TLS13"
            for key, value in (("min_version", "TLS10"), ("max_version", "TLS11"))
        ],
    ),
    (
        "non_string_keys",
        "1: x\ntls_server_config:\n  2: y\n",
        ["tls_server_config.2: keys must be strings", "1: keys must be strings"],
    ),
    (
        "problems_in_every_section",
        "http_server_config:\n  http2: 'yes'\n"
        "basic_auth_users:\n  'bob:ops': " + HASH + "\n"
        "rate_limit:\n  interval: 1m\n  burst: 0\n"
        "tls_server_config:\n  cert_file: server.pem\n",
        [
            "http_server_config.http2: expected true or false",
            "basic_auth_users.bob:ops: a user name cannot contain ':'",
            "rate_limit.burst: must be at least 1 when interval is set "
            "(with 0 every request would be refused)",
            "tls_server_config.key_file: missing one of key or key_file",
        ],
    ),
    (
        "min_above_max",
        TLS + "  min_version: TLS13\n  max_version: TLS12\n",
        ["tls_server_config.max_version: TLS12 is lower than min_version TLS13"],
    ),
    (
        "missing_cert_file",
        "tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n",
        ["tls_server_config.cert_file: cannot read {dir}/missing.pem: No such file or directory"],
    ),
    (
        "no_key_file",
        "tls_server_config:\n  cert_file: server.pem\n",
        ["tls_server_config.key_file: missing one of key or key_file"],
    ),
    (
        "client_ca_without_client_auth",
        TLS + "  client_ca_file: ca.pem\n",
        [
            "tls_server_config.client_auth_type: a client CA is set but client_auth_type is "
            "NoClientCert; use RequireAndVerifyClientCert"
        ],
    ),
    (
        "unverified_client_auth",
        TLS + "  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.pem\n",
        [
            "tls_server_config.client_auth_type: RequireAnyClientCert cannot be honoured: "
            "Python's ssl module verifies every client certificate it asks for; use "
            "VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        ],
    ),
    (
        "unknown_client_auth",
        TLS + "  client_auth_type: Always\n",
        [
            'tls_server_config.client_auth_type: "Always" is not one of NoClientCert, '
            "VerifyClientCertIfGiven, RequireAndVerifyClientCert"
        ],
    ),
    (
        "sans_without_required_client_cert",
        TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n"
        "  client_allowed_sans: [scraper.example]\n",
        [
            "tls_server_config.client_allowed_sans: needs client_auth_type "
            "RequireAndVerifyClientCert, so every client has a certificate to match"
        ],
    ),
    (
        "empty_sans",
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
        "  client_allowed_sans: []\n",
        [
            "tls_server_config.client_allowed_sans: an empty list would refuse every client; "
            "list at least one SAN or remove the key"
        ],
    ),
    (
        "cipher_suites",
        TLS + "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_RC4_128_SHA,"
        " TLS_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_GCM_SHA256]\n",
        [
            f'tls_server_config.cipher_suites[{index}]: unknown cipher suite "{name}"'
            "; use one of TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, "
            "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, "
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, "
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, "
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
            for index, name in (
                (1, "TLS_RSA_WITH_RC4_128_SHA"),
                (3, "TLS_RSA_WITH_AES_128_GCM_SHA256"),
            )
        ],
    ),
    (
        "http2_without_its_required_suite",
        TLS + "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n  max_version: TLS12\n",
        [
            "tls_server_config.cipher_suites: http2: TLSConfig.CipherSuites is missing an "
            "HTTP/2-required AES_128_GCM_SHA256 cipher (need at least one of "
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); "
            "add one or set http_server_config.http2 to false"
        ],
    ),
    (
        "only_tls13_suites_with_tls12",
        TLS + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n  max_version: TLS12\n"
        "http_server_config:\n  http2: false\n",
        [
            "tls_server_config.cipher_suites: only TLS 1.3 suites, which TLS 1.2 (max_version) "
            "cannot use; every handshake would fail"
        ],
    ),
    (
        "curves",
        TLS + "  curve_preferences: [CurveP256, X448]\n",
        [
            'tls_server_config.curve_preferences[1]: unknown curve "X448"; '
            "use one of CurveP256, CurveP384, CurveP521, X25519"
        ],
    ),
    (
        "two_curves",
        TLS + "  curve_preferences: [CurveP256, X25519]\n",
        [
            "tls_server_config.curve_preferences: Python's ssl module can limit the key "
            "exchange to one curve only; list one"
        ],
    ),
    (
        "inline_cert_and_key_not_pem",
        "tls_server_config:\n  cert: '-----BEGIN CERTIFICATE-----'\n"
        "  key: '-----BEGIN PRIVATE KEY----- MIIEvQIBADANBg'\n",
        ["tls_server_config.cert: no PEM certificate"],
    ),
    (
        "inline_key_not_pem",
        "tls_server_config:\n  cert_file: server.pem\n  key: '-----BEGIN PRIVATE KEY-----'\n",
        ["tls_server_config.key: no PEM private key"],
    ),
    (
        "key_of_another_certificate",
        "tls_server_config:\n  cert_file: server.pem\n  key_file: other.key\n",
        [
            "tls_server_config.key_file: the key in {dir}/other.key does not belong to "
            "the certificate in {dir}/server.pem"
        ],
    ),
    (
        "not_a_certificate",
        "tls_server_config:\n  cert_file: garbage.pem\n  key_file: server.key\n",
        ["tls_server_config.cert_file: no PEM certificate in {dir}/garbage.pem"],
    ),
    (
        "not_a_key",
        "tls_server_config:\n  cert_file: server.pem\n  key_file: garbage.pem\n",
        ["tls_server_config.key_file: no PEM private key in {dir}/garbage.pem"],
    ),
    (
        "encrypted_key",
        "tls_server_config:\n  cert_file: server.pem\n  key_file: encrypted.key\n",
        [
            "tls_server_config.key_file: {dir}/encrypted.key is encrypted with a passphrase, "
            "which is not supported; store the key unencrypted, readable only by the exporter"
        ],
    ),
    (
        "inline_client_ca_not_pem",
        TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca: nonsense\n",
        ["tls_server_config.client_ca: no PEM certificate"],
    ),
    (
        "client_ca_without_certificates",
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: garbage.pem\n",
        ["tls_server_config.client_ca_file: no PEM certificate in {dir}/garbage.pem"],
    ),
    (
        "http2_not_a_boolean",
        "http_server_config:\n  http2: 'yes'\n",
        ["http_server_config.http2: expected true or false"],
    ),
    (
        "header_names_and_values",
        "http_server_config:\n  headers:\n    Server: exporter\n"
        "    X-Frame-Options: allow\n"
        "    Content-Security-Policy: \"default-src 'self'\\r\\nX: y\"\n",
        [
            "http_server_config.headers.Server: this header cannot be set; use one of "
            "Content-Security-Policy, Strict-Transport-Security, X-Content-Type-Options, "
            "X-Frame-Options, X-XSS-Protection",
            'http_server_config.headers.X-Frame-Options: "allow" is not one of deny, sameorigin',
            "http_server_config.headers.Content-Security-Policy: a header value must be "
            "printable ASCII on one line",
        ],
    ),
    (
        "users",
        "basic_auth_users:\n  alice: plain-text-password\n  bob:bob: "
        + HASH
        + "\n  7: "
        + HASH
        + "\n",
        [
            "basic_auth_users.alice: not a bcrypt hash (it should look like $2y$10$ followed by "
            """53 characters; make one with: htpasswd -nBC 10 "" | tr -d ':\\n')""",
            "basic_auth_users.7: keys must be strings",
        ],
    ),
    (
        "user_name_with_colon",
        "basic_auth_users:\n  'bob:ops': " + HASH + "\n",
        ["basic_auth_users.bob:ops: a user name cannot contain ':'"],
    ),
    (
        "duplicate_user",
        "basic_auth_users:\n  alice: " + HASH + "\n  alice: " + OTHER_HASH + "\n",
        ["basic_auth_users.alice: duplicate key at line 3 (first at line 2)"],
    ),
    (
        "rate_limit",
        "rate_limit:\n  interval: 1s\n  burst: 0\n",
        [
            "rate_limit.burst: must be at least 1 when interval is set "
            "(with 0 every request would be refused)"
        ],
    ),
    (
        "rate_limit_types",
        "rate_limit:\n  interval: soon\n  burst: true\n",
        [
            'rate_limit.interval: invalid duration "soon": use a number of seconds or '
            "units ms, s, m, h, d",
            "rate_limit.burst: expected a whole number",
        ],
    ),
    (
        "not_yaml",
        "tls_server_config: [\n",
        ["{file}: not valid YAML: line 2, column 1: did not find expected node content"],
    ),
    ("top_level_list", "- a\n", ["{file}: the top level must be a mapping of keys"]),
    (
        "wrong_section_types",
        "tls_server_config: [a]\nbasic_auth_users: alice\n",
        [
            "tls_server_config: expected a mapping of keys",
            "basic_auth_users: expected a mapping of keys",
        ],
    ),
    (
        "several_tls_problems",
        "tls_server_config:\n  cert_file: nowhere.pem\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
        "  client_allowed_sans: [scraper.example]\n  cipher_suites: "
        "[TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n",
        ["tls_server_config.cert_file: cannot read {dir}/nowhere.pem: No such file or directory"],
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "expected"), BAD_CONFIGS, ids=[case[0] for case in BAD_CONFIGS]
)
def test_bad_web_config_reports_every_problem_with_its_path(
    pki: Pki, name: str, text: str, expected: list[str]
) -> None:
    path = pki.dir / f"{name}.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_web_config(str(path))
    assert raised.value.problems == [line.format(dir=pki.dir, file=path) for line in expected]


def test_problems_never_show_hashes_or_keys(pki: Pki) -> None:
    path = pki.dir / "secrets.yml"
    path.write_text(
        "tls_server_config:\n  key: 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC'\n"
        "basic_auth_users:\n  alice: 'plain-text-password'\n  bob: 42\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_web_config(str(path))
    text = str(raised.value)
    assert "plain-text-password" not in text
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in text
    assert "42" not in text
    assert raised.value.__cause__ is None
    assert raised.value.problems == [
        "basic_auth_users.alice: not a bcrypt hash (it should look like $2y$10$ followed by "
        """53 characters; make one with: htpasswd -nBC 10 "" | tr -d ':\\n')""",
        "basic_auth_users.bob: expected a string",
        "tls_server_config.cert_file: missing one of cert or cert_file",
    ]


def test_no_file_or_an_empty_file_means_plain_http_without_auth(tmp_path: Path) -> None:
    empty = tmp_path / "web.yml"
    empty.write_text("# nothing yet\n")
    for path in (None, "", str(empty)):
        assert load_web_config(path) == WebConfig()


def test_a_missing_web_config_file_is_one_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_web_config(str(tmp_path / "web.yml"))
    assert raised.value.problems == [f"{tmp_path}/web.yml: cannot read: No such file or directory"]


def test_full_config_loads_with_paths_relative_to_its_folder(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    web = web_config(
        pki,
        "full",
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
        "  min_version: TLS13\n  prefer_server_cipher_suites: false\n"
        "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
        "    Content-Security-Policy: ''\n    Strict-Transport-Security: max-age=31536000\n"
        f"basic_auth_users:\n  alice: {HASH}\n  bob: {OTHER_HASH}\n"
        "rate_limit:\n  interval: 500ms\n  burst: 20\n",
    )
    context = web.ssl_context
    assert context is not None
    assert (context.minimum_version, context.maximum_version) == (
        ssl.TLSVersion.TLSv1_3,
        ssl.TLSVersion.TLSv1_3,
    )
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.get_ca_certs(binary_form=True) == [
        ssl.PEM_cert_to_DER_cert(Path(pki.ca).read_text())
    ]
    assert web.headers == (
        ("X-Frame-Options", "deny"),
        ("Strict-Transport-Security", "max-age=31536000"),
    )
    assert web.basic_auth is not None
    assert web.basic_auth.users == ("alice", "bob")
    assert web.rate_limit == RateLimit(interval=0.5, burst=20)
    assert web.ssl_context is not None
    assert web.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert HASH not in repr(web)


def test_inline_client_ca_is_loaded(pki: Pki) -> None:
    pem = Path(pki.ca).read_text()
    indented = "".join(f"    {line}\n" for line in pem.splitlines())
    web = web_config(
        pki,
        "inline-ca",
        TLS + f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca: |\n{indented}",
    )
    assert web.ssl_context is not None
    assert web.ssl_context.verify_mode == ssl.CERT_OPTIONAL
    assert web.ssl_context.get_ca_certs(binary_form=True) == [ssl.PEM_cert_to_DER_cert(pem)]


def test_defaults_follow_the_toolkit(pki: Pki) -> None:
    web = web_config(pki, "defaults", TLS)
    context = web.ssl_context
    assert context is not None
    assert (context.minimum_version, context.maximum_version) == (
        ssl.TLSVersion.TLSv1_2,
        ssl.TLSVersion.TLSv1_3,
    )
    assert context.verify_mode == ssl.CERT_NONE
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert (web.headers, web.basic_auth, web.rate_limit) == ((), None, None)


def test_a_zero_rate_limit_interval_means_no_limit(pki: Pki) -> None:
    web = web_config(pki, "no_rate_limit", "rate_limit:\n  interval: 0s\n  burst: 0\n")
    assert web.rate_limit is None


# --- BasicAuth -----------------------------------------------------------------------


def basic(user: str | bytes, password: str | bytes) -> str:
    raw = (user.encode() if isinstance(user, str) else user) + b":"
    raw += password.encode() if isinstance(password, str) else password
    return "Basic " + base64.b64encode(raw).decode()


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    calls: list[tuple[bytes, bytes]] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append((password, hashed))
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


def test_basic_auth_accepts_the_right_password_only(bcrypt_calls: list[Any]) -> None:
    auth = BasicAuth({"alice": HASH})
    assert auth.check(basic("alice", PASSWORD)) is True
    assert auth.check(basic("alice", "wrong")) is False
    assert auth.check(basic("mallory", PASSWORD)) is False
    assert auth.check("basic " + basic("alice", PASSWORD).split(" ")[1]) is True
    assert len(bcrypt_calls) == 3


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"alice-without-colon").decode(),
        basic(b"\xff\xfe", PASSWORD),
        "Basic d\u00e9j\u00e0vu",
        "Digest username=alice",
    ],
    ids=[
        "none",
        "empty",
        "bearer",
        "no-credentials",
        "bad-base64",
        "no-colon",
        "non-utf8-user",
        "non-ascii",
        "digest",
    ],
)
def test_malformed_authorization_headers_are_refused_without_bcrypt(
    header: str | None, bcrypt_calls: list[Any]
) -> None:
    assert BasicAuth({"alice": HASH}).check(header) is False
    assert bcrypt_calls == []


def test_success_is_cached_and_failure_never_is(bcrypt_calls: list[Any]) -> None:
    auth = BasicAuth({"alice": HASH})
    assert [auth.check(basic("alice", PASSWORD)) for _ in range(3)] == [True, True, True]
    assert len(bcrypt_calls) == 1
    assert [auth.check(basic("alice", "wrong")) for _ in range(3)] == [False, False, False]
    assert len(bcrypt_calls) == 4


def test_the_cache_keeps_the_most_recent_successes(bcrypt_calls: list[Any]) -> None:
    auth = BasicAuth({"alice": HASH, "bob": HASH, "carol": HASH}, cache_size=2)
    for user in ("alice", "bob", "alice", "carol"):
        assert auth.check(basic(user, PASSWORD)) is True
    assert [password for password, _ in bcrypt_calls] == [PASSWORD.encode()] * 3
    assert auth.check(basic("alice", PASSWORD)) is True
    assert auth.check(basic("carol", PASSWORD)) is True
    assert len(bcrypt_calls) == 3
    assert auth.check(basic("bob", PASSWORD)) is True
    assert len(bcrypt_calls) == 4


def test_unknown_users_cost_a_bcrypt_check_against_the_costliest_hash(
    bcrypt_calls: list[Any],
) -> None:
    auth = BasicAuth({"alice": HASH, "bob": OTHER_HASH})
    assert auth.check(basic("mallory", "other password")) is False
    assert auth.check(basic("mallory", "other password")) is False
    assert bcrypt_calls == [(b"other password", OTHER_HASH.encode())] * 2


def test_bcrypt_reads_the_first_72_bytes_as_htpasswd_does() -> None:
    long_password = "p" * 72 + "-and-more"
    auth = BasicAuth({"alice": bcrypt.hashpw(b"p" * 72, bcrypt.gensalt(4)).decode()})
    assert auth.check(basic("alice", long_password)) is True
    assert auth.check(basic("alice", "p" * 71)) is False


def test_basic_auth_repr_names_users_only() -> None:
    assert repr(BasicAuth({"alice": HASH})) == "BasicAuth(users=['alice'])"


def test_concurrent_checks_agree(bcrypt_calls: list[Any]) -> None:
    auth = BasicAuth({"alice": HASH})
    results: list[bool] = []
    lock = threading.Lock()

    def check(password: str) -> None:
        outcome = auth.check(basic("alice", password))
        with lock:
            results.append(outcome)

    threads = [
        threading.Thread(target=check, args=(PASSWORD if n % 2 else "wrong",)) for n in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 8 + [True] * 8


# --- the front in process ---------------------------------------------------------------


WORKERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-http")


def protect(
    app: WsgiApp, current: Callable[[], WebConfig], clock: Callable[[], float] = time.monotonic
) -> Front:
    return Front(app, current, WORKERS, budget=lambda header: 5.0, clock=clock)


def call(
    front: Front, path: str = "/metrics", method: str = "GET", authorization: str | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request through the front: (status, headers, body) as the server sends them."""
    headers = [("host", "localhost")]
    if authorization is not None:
        headers.append(("authorization", authorization))
    request = Request(method, path, tuple(headers), "1.1", client=("127.0.0.1", 40000))
    answer = asyncio.run(front.answer(request))
    pairs = [(name.lower(), value) for name, value in answer.headers]
    if all(name != "content-length" for name, _ in pairs):
        pairs.append(("content-length", str(len(answer.body))))
    return answer.status, pairs, b"" if method == "HEAD" else answer.body


class Recorder:
    """A WSGI app that answers "ok" and counts its calls."""

    def __init__(self, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.paths: list[str] = []
        self.headers = list(headers)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        self.paths.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain"), *self.headers])
        return [b"ok\n"]


AUTH_AND_HEADER = WebConfig(
    basic_auth=BasicAuth({"alice": HASH}), headers=(("X-Frame-Options", "deny"),)
)


@pytest.mark.parametrize("path", ["/metrics", "/", "/-/healthy", "/-/ready", "/-/reload", "/x"])
def test_every_path_needs_credentials(path: str) -> None:
    app = Recorder()
    status, headers, body = call(protect(app, lambda: AUTH_AND_HEADER), path)
    assert (status, body) == (401, b"Unauthorized\n")
    assert headers == [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", "13"),
        ("www-authenticate", "Basic"),
        ("x-frame-options", "deny"),
    ]
    assert app.paths == []


def test_right_credentials_reach_the_app_with_the_configured_headers() -> None:
    app = Recorder()
    protected = protect(app, lambda: AUTH_AND_HEADER)
    assert call(protected, authorization=basic("alice", PASSWORD)) == (
        200,
        [("content-type", "text/plain"), ("x-frame-options", "deny"), ("content-length", "3")],
        b"ok\n",
    )
    assert call(protected, authorization=basic("alice", "nope"))[0] == 401
    assert app.paths == ["/metrics"]


def test_head_refusals_have_no_body() -> None:
    status, _, body = call(protect(Recorder(), lambda: AUTH_AND_HEADER), method="HEAD")
    assert (status, body) == (401, b"")


def test_a_header_the_app_sets_itself_wins() -> None:
    app = Recorder(headers=[("x-frame-options", "sameorigin")])
    web = WebConfig(headers=(("X-Frame-Options", "deny"), ("X-Content-Type-Options", "nosniff")))
    assert call(protect(app, lambda: web))[1] == [
        ("content-type", "text/plain"),
        ("x-frame-options", "sameorigin"),
        ("x-content-type-options", "nosniff"),
        ("content-length", "3"),
    ]


def test_the_current_web_config_applies_from_the_next_request() -> None:
    current = [AUTH_AND_HEADER]
    protected = protect(Recorder(), lambda: current[0])
    assert call(protected)[0] == 401
    current[0] = WebConfig()
    assert call(protected) == (
        200,
        [("content-type", "text/plain"), ("content-length", "3")],
        b"ok\n",
    )
    current[0] = WebConfig(basic_auth=BasicAuth({"bob": OTHER_HASH}))
    assert call(protected, authorization=basic("alice", PASSWORD))[0] == 401
    assert call(protected, authorization=basic("bob", "other password"))[0] == 200


def test_rate_limit_refuses_past_the_burst_until_tokens_come_back() -> None:
    now = [100.0]
    web = WebConfig(
        rate_limit=RateLimit(interval=10.0, burst=2), headers=(("X-XSS-Protection", "0"),)
    )
    protected = protect(Recorder(), lambda: web, clock=lambda: now[0])
    assert [call(protected)[0] for _ in range(3)] == [200, 200, 429]
    assert call(protected)[1:] == (
        [
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", "18"),
            ("x-xss-protection", "0"),
        ],
        b"Too Many Requests\n",
    )
    now[0] += 10.0
    assert [call(protected)[0] for _ in range(2)] == [200, 429]
    now[0] += 100.0
    assert [call(protected)[0] for _ in range(3)] == [200, 200, 429]


# --- real HTTPS through the server -------------------------------------------------------


def ok_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


@contextlib.contextmanager
def serving(
    web: WebConfig, current: Callable[[], WebConfig] | None = None, app: WsgiApp = ok_app
) -> Iterator[int]:
    """The server serving the front before `app` on 127.0.0.1, in a thread of its own, with
    `web` or whatever `current` returns when it is given."""
    with web_server.serving(app, web=current or (lambda: web)) as served:
        yield served.port


def tls_client(pki: Pki, **settings: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    for name, value in settings.items():
        setattr(context, name, value)
    return context


def handshake(port: int, context: ssl.SSLContext) -> tuple[str | None, str | None, str]:
    """(TLS version, ALPN protocol, cipher) of a connection to the server."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return tls.version(), tls.selected_alpn_protocol(), cipher[0]


def fetch(url: str, **options: Any) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (names in lower case) and body, with the connection closed before
    returning: an idle TLS keep-alive connection would hold up the server's shutdown."""
    with requests.get(url, timeout=5, **options) as response:
        headers = {name.lower(): value for name, value in response.headers.items()}
        return response.status_code, headers, response.content


def test_https_with_basic_auth_and_headers(pki: Pki) -> None:
    web = web_config(
        pki,
        "https",
        TLS + f"http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        f"basic_auth_users:\n  alice: {HASH}\n",
    )
    with serving(web) as port:
        url = f"https://127.0.0.1:{port}/metrics"
        status, headers, body = fetch(url, verify=pki.ca)
        assert (status, body) == (401, b"Unauthorized\n")
        assert (headers["www-authenticate"], headers["x-content-type-options"]) == (
            "Basic",
            "nosniff",
        )
        assert fetch(url, verify=pki.ca, auth=("alice", "guess"))[0] == 401
        status, headers, body = fetch(url, verify=pki.ca, auth=("alice", PASSWORD))
        assert (status, headers["x-content-type-options"], body) == (200, "nosniff", b"ok\n")
        assert fetch(f"https://127.0.0.1:{port}/-/healthy", verify=pki.ca)[0] == 401
        with pytest.raises(requests.exceptions.SSLError):
            fetch(url)


def test_without_tls_the_same_server_speaks_plain_http() -> None:
    web = WebConfig(basic_auth=BasicAuth({"alice": HASH}))
    with serving(web) as port:
        url = f"http://127.0.0.1:{port}/metrics"
        assert fetch(url)[0] == 401
        assert fetch(url, auth=("alice", PASSWORD))[0] == 200


def test_client_certificates_are_required_and_verified(pki: Pki) -> None:
    web = web_config(
        pki,
        "mtls",
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    )
    with serving(web) as port:
        url = f"https://127.0.0.1:{port}/metrics"
        with pytest.raises(requests.exceptions.ConnectionError):
            fetch(url, verify=pki.ca)
        with pytest.raises(requests.exceptions.ConnectionError):
            fetch(url, verify=pki.ca, cert=pki.foreign_client)
        status, _, body = fetch(url, verify=pki.ca, cert=pki.client)
        assert (status, body) == (200, b"ok\n")


def test_client_allowed_sans_refuse_other_valid_certificates(pki: Pki) -> None:
    web = web_config(
        pki,
        "sans",
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
        "  client_allowed_sans: [other.example, scraper.example]\n",
    )
    with serving(web) as port:
        url = f"https://127.0.0.1:{port}/metrics"
        with pytest.raises(requests.exceptions.ConnectionError):
            fetch(url, verify=pki.ca, cert=pki.other_san_client)
        assert fetch(url, verify=pki.ca, cert=pki.client)[0] == 200


def test_min_version_tls13_refuses_a_tls12_client(pki: Pki) -> None:
    web = web_config(pki, "tls13", TLS + "  min_version: TLS13\n")
    with serving(web) as port:
        with pytest.raises(ssl.SSLError):
            handshake(port, tls_client(pki, maximum_version=ssl.TLSVersion.TLSv1_2))
        assert handshake(port, tls_client(pki))[0] == "TLSv1.3"


def test_cipher_suites_choose_what_tls12_clients_get(pki: Pki) -> None:
    web = web_config(
        pki,
        "ciphers",
        TLS + "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n"
        "http_server_config:\n  http2: false\n",
    )
    with serving(web) as port:
        assert handshake(port, tls_client(pki)) == (
            "TLSv1.2",
            None,
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        )
        narrow = tls_client(pki)
        narrow.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        with pytest.raises(ssl.SSLError):
            handshake(port, narrow)


def test_curve_preferences_limit_the_key_exchange(pki: Pki) -> None:
    web = web_config(pki, "curve", TLS + "  curve_preferences: [CurveP384]\n")
    with serving(web) as port:
        p256_only = tls_client(pki)
        p256_only.set_ecdh_curve("prime256v1")
        with pytest.raises(ssl.SSLError):
            handshake(port, p256_only)
        p384_only = tls_client(pki)
        p384_only.set_ecdh_curve("secp384r1")
        assert handshake(port, p384_only)[0] == "TLSv1.3"


@pytest.mark.parametrize(("http2", "protocol"), [("true", "h2"), ("false", "http/1.1")])
def test_http2_is_offered_unless_turned_off(pki: Pki, http2: str, protocol: str) -> None:
    web = web_config(pki, f"http2-{http2}", TLS + f"http_server_config:\n  http2: {http2}\n")
    client = tls_client(pki)
    client.set_alpn_protocols(["h2", "http/1.1"])
    with serving(web) as port:
        assert handshake(port, client)[1] == protocol


def test_http2_requests_get_the_same_protection(pki: Pki) -> None:
    web = web_config(
        pki,
        "h2",
        TLS + "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        f"basic_auth_users:\n  alice: {HASH}\n",
    )
    client = tls_client(pki)
    client.set_alpn_protocols(["h2"])
    with serving(web) as port:
        headers, body = h2_get(port, client, [])
        assert (headers[0], body) == ((b":status", b"401"), b"Unauthorized\n")
        assert (b"www-authenticate", b"Basic") in headers
        assert (b"x-frame-options", b"deny") in headers
        headers, body = h2_get(port, client, [("authorization", basic("alice", PASSWORD))])
        assert (headers[0], body) == ((b":status", b"200"), b"ok\n")
        assert (b"x-frame-options", b"deny") in headers


def test_tls_settings_follow_a_reload_for_new_connections(pki: Pki) -> None:
    first = web_config(pki, "reload-first", TLS)
    stricter = web_config(
        pki,
        "reload-stricter",
        TLS + "  min_version: TLS13\n  client_auth_type: RequireAndVerifyClientCert\n"
        "  client_ca_file: ca.pem\n",
    )
    rotated = web_config(
        pki,
        "reload-rotated",
        "tls_server_config:\n  cert_file: rotated.pem\n  key_file: rotated.key\n",
    )
    current = [first]
    tls12 = tls_client(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    with serving(first, current=lambda: current[0]) as port:
        url = f"https://127.0.0.1:{port}/metrics"
        assert handshake(port, tls12)[0] == "TLSv1.2"
        current[0] = stricter
        with pytest.raises(ssl.SSLError):
            handshake(port, tls12)
        with pytest.raises(requests.exceptions.ConnectionError):
            fetch(url, verify=pki.ca)
        assert fetch(url, verify=pki.ca, cert=pki.client)[0] == 200
        current[0] = WebConfig()
        assert fetch(url, verify=pki.ca, cert=pki.client)[0] == 200
        current[0] = rotated
        with pytest.raises(requests.exceptions.SSLError):
            fetch(url, verify=pki.ca)
        assert fetch(url, verify=pki.foreign_ca)[0] == 200


# --- read as exporter-toolkit reads it ----------------------------------------------------


def test_a_verifying_client_auth_without_client_ca_uses_the_system_roots(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))  # no other roots than SSL_CERT_FILE
    text = TLS + "  client_auth_type: RequireAndVerifyClientCert\n"
    monkeypatch.setenv("SSL_CERT_FILE", pki.ca)
    trusting = web_config(pki, "system-roots", text)
    monkeypatch.setenv("SSL_CERT_FILE", pki.foreign_ca)
    distrusting = web_config(pki, "other-system-roots", text)
    with serving(trusting) as port:
        url = f"https://127.0.0.1:{port}/metrics"
        assert fetch(url, verify=pki.ca, cert=pki.client)[0] == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            fetch(url, verify=pki.ca)
    with serving(distrusting) as port, pytest.raises(requests.exceptions.ConnectionError):
        fetch(f"https://127.0.0.1:{port}/metrics", verify=pki.ca, cert=pki.client)


def test_header_values_are_served_as_written_whatever_their_yaml_type(pki: Pki) -> None:
    web = web_config(
        pki,
        "scalar-headers",
        "http_server_config:\n  headers:\n    X-XSS-Protection: 1\n"
        "    Content-Security-Policy: 1.10\n    Strict-Transport-Security: yes\n"
        "    X-Frame-Options: ~\n",
    )
    assert web.headers == (
        ("X-XSS-Protection", "1"),
        ("Content-Security-Policy", "1.10"),
        ("Strict-Transport-Security", "yes"),
    )


def indented(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())


def test_inline_cert_and_key_are_served_and_leave_no_file(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    cert = (pki.dir / "server.pem").read_text()
    key = (pki.dir / "server.key").read_text()
    web = web_config(
        pki, "inline", f"tls_server_config:\n  cert: |\n{indented(cert)}  key: |\n{indented(key)}"
    )
    assert key not in repr(web)
    assert list(tmp_path.iterdir()) == []
    with serving(web) as port:
        assert fetch(f"https://127.0.0.1:{port}/metrics", verify=pki.ca)[0] == 200


def test_a_certificate_file_wins_over_inline_text_as_in_the_toolkit(pki: Pki) -> None:
    web = web_config(pki, "file-wins", TLS + "  cert: not a certificate\n")
    assert web.ssl_context is not None


def test_tls13_suite_names_are_accepted_and_ignored(pki: Pki) -> None:
    web = web_config(
        pki,
        "tls13-names",
        TLS
        + "  cipher_suites: [TLS_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n",
    )
    with serving(web) as port:
        assert handshake(port, tls_client(pki))[:2] == ("TLSv1.3", None)
        tls12 = tls_client(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
        assert handshake(port, tls12) == ("TLSv1.2", None, "ECDHE-ECDSA-AES128-GCM-SHA256")


def test_only_tls13_suite_names_leave_tls13_alone(pki: Pki) -> None:
    web = web_config(
        pki,
        "tls13-only",
        TLS + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\nhttp_server_config:\n  http2: false\n",
    )
    with serving(web) as port:
        assert handshake(port, tls_client(pki))[0] == "TLSv1.3"
        with pytest.raises(ssl.SSLError):
            handshake(port, tls_client(pki, maximum_version=ssl.TLSVersion.TLSv1_2))


@pytest.mark.parametrize(
    "extra",
    ["http_server_config:\n  http2: false\n", "  min_version: TLS13\n"],
    ids=["http2_off", "tls13_only"],
)
def test_http2_needs_its_suite_only_when_tls12_may_carry_it(pki: Pki, extra: str) -> None:
    text = TLS + "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n"
    text = text + extra if extra.startswith("  ") else extra + text
    assert web_config(pki, "http2-suite", text).ssl_context is not None


@pytest.mark.parametrize(
    "settings",
    [
        "  min_version: TLS13\n",
        "  prefer_server_cipher_suites: false\n  max_version: TLS12\n",
        "  cert_file: ''\n  key: ''\n  client_auth_type: ''\n",
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519]\n",
    ],
)
def test_tls_settings_that_name_no_certificate_leave_plain_http(pki: Pki, settings: str) -> None:
    web = web_config(pki, "plain", "tls_server_config:\n" + settings)
    assert web.ssl_context is None
    with serving(web) as port:
        assert fetch(f"http://127.0.0.1:{port}/metrics")[0] == 200


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ("  client_auth_type: RequireAndVerifyClientCert\n", "cert_file: missing one of cert"),
        ("  client_ca_file: ca.pem\n", "cert_file: missing one of cert"),
        ("  key_file: server.key\n", "cert_file: missing one of cert"),
        ("  cert: x\n", "key_file: missing one of key"),
    ],
)
def test_tls_settings_that_turn_tls_on_need_a_certificate_and_key(
    pki: Pki, settings: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        web_config(pki, "half", "tls_server_config:\n" + settings)
    assert f"tls_server_config.{problem}" in raised.value.problems[0]


# --- certificates and the web config follow their files ----------------------------------


@dataclass
class Rotation:
    dir: Path
    config: Path
    ca: str
    renewed_ca: str

    def install(self, name: str, pem: str, key: str) -> None:
        """Replaces the served files the way a renewal tool does: new files renamed in."""
        for target, source in (("server.pem", pem), ("server.key", key)):
            staged = self.dir / f".{target}.new"
            staged.write_bytes((self.dir.parent / name / source).read_bytes())
            staged.replace(self.dir / target)


@pytest.fixture
def rotation(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rotation:
    monkeypatch.setattr("exporter.web.webconfig.RECHECK_SECONDS", 0.0)
    folder = tmp_path / "tls"
    folder.mkdir()
    (tmp_path / "pki").symlink_to(pki.dir)
    for name in ("server.pem", "server.key"):
        (folder / name).write_bytes((pki.dir / name).read_bytes())
    config = folder / "web.yml"
    config.write_text(TLS)
    return Rotation(folder, config, pki.ca, pki.foreign_ca)


def served_by(port: int, ca: str) -> bool:
    try:
        return fetch(f"https://127.0.0.1:{port}/metrics", verify=ca)[0] == 200
    except requests.exceptions.SSLError:
        return False


def errors(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for record in caplog.records if text in record.getMessage())


def test_renewed_certificate_files_are_served_from_the_next_connection(
    rotation: Rotation,
) -> None:
    web = load_web_config(str(rotation.config))
    before = web.certificate_not_after
    assert before is not None
    with serving(web, current=web.latest) as port:
        assert served_by(port, rotation.ca)
        rotation.install("pki", "rotated.pem", "rotated.key")
        assert served_by(port, rotation.renewed_ca)
        assert not served_by(port, rotation.ca)
    assert web.latest().tls is web.tls  # the web config file itself did not change


def test_certificate_expiry_is_read_from_the_served_certificate(pki: Pki) -> None:
    web = web_config(pki, "expiry", TLS)
    leaf = x509.load_pem_x509_certificate((pki.dir / "server.pem").read_bytes())
    assert web.certificate_not_after == leaf.not_valid_after_utc.timestamp()
    collected = list(CertificateExpiryCollector(lambda: web.certificate_not_after).collect())
    assert [(sample.name, sample.value) for sample in collected[0].samples] == [
        (
            "cognito_user_import_web_tls_certificate_not_after_timestamp_seconds",
            leaf.not_valid_after_utc.timestamp(),
        )
    ]
    assert list(CertificateExpiryCollector(lambda: None).collect()) == []


def test_kubernetes_secret_volumes_swap_a_symlink_and_are_followed(
    rotation: Rotation,
) -> None:
    """A Secret volume: server.pem -> ..data/server.pem, ..data -> a timestamped folder,
    swapped by renaming a new ..data link over the old one."""
    pki_dir = rotation.dir.parent / "pki"
    for version, (pem, key) in enumerate(
        (("server.pem", "server.key"), ("rotated.pem", "rotated.key"))
    ):
        folder = rotation.dir / f"..v{version}"
        folder.mkdir()
        (folder / "server.pem").write_bytes((pki_dir / pem).read_bytes())
        (folder / "server.key").write_bytes((pki_dir / key).read_bytes())
    (rotation.dir / "..data").symlink_to("..v0")
    for name in ("server.pem", "server.key"):
        (rotation.dir / name).unlink()
        (rotation.dir / name).symlink_to(f"..data/{name}")
    web = load_web_config(str(rotation.config))
    with serving(web, current=web.latest) as port:
        assert served_by(port, rotation.ca)
        (rotation.dir / "..data_tmp").symlink_to("..v1")
        (rotation.dir / "..data_tmp").replace(rotation.dir / "..data")
        assert served_by(port, rotation.renewed_ca)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("half_written_key", "no PEM private key"),
        ("key_of_another_certificate", "does not belong to the certificate"),
        ("huge_certificate", "is larger than"),
        ("certificate_removed", "No such file or directory"),
        ("certificate_became_a_fifo", "is a FIFO, not a regular file"),
        ("certificate_linked_to_a_device", "is a character device, not a regular file"),
    ],
)
def test_a_broken_renewal_keeps_the_last_good_certificate_with_one_line(
    rotation: Rotation, caplog: pytest.LogCaptureFixture, damage: str, problem: str
) -> None:
    web = load_web_config(str(rotation.config))
    key = rotation.dir / "server.key"
    pem = rotation.dir / "server.pem"
    with serving(web, current=web.latest) as port:
        assert served_by(port, rotation.ca)
        if damage == "half_written_key":
            key.write_bytes((rotation.dir.parent / "pki" / "rotated.key").read_bytes()[:100])
        elif damage == "key_of_another_certificate":
            key.write_bytes((rotation.dir.parent / "pki" / "rotated.key").read_bytes())
        elif damage == "huge_certificate":
            with pem.open("ab") as file:
                file.truncate(5 * 1024 * 1024)
        elif damage == "certificate_became_a_fifo":
            pem.unlink()
            os.mkfifo(pem)
        elif damage == "certificate_linked_to_a_device":
            pem.unlink()
            pem.symlink_to("/dev/zero")
        else:
            pem.unlink()
        for _ in range(3):
            assert served_by(port, rotation.ca)
        refusals = [
            record.__dict__["fields"]["problems"]
            for record in caplog.records
            if "TLS certificate files changed but cannot be loaded" in record.getMessage()
        ]
        assert len(refusals) == 1
        assert problem in refusals[0]
        rotation.install("pki", "rotated.pem", "rotated.key")
        assert served_by(port, rotation.renewed_ca)


def test_a_changed_web_config_applies_to_the_next_request_and_a_broken_one_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("exporter.web.webconfig.RECHECK_SECONDS", 0.0)
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: {HASH}\n")
    web = load_web_config(str(path))
    with serving(web, current=web.latest) as port:
        url = f"http://127.0.0.1:{port}/metrics"
        assert fetch(url, auth=("alice", PASSWORD))[0] == 200
        path.write_text(f"basic_auth_users:\n  bob: {HASH}\n")
        assert fetch(url, auth=("alice", PASSWORD))[0] == 401
        assert fetch(url, auth=("bob", PASSWORD))[0] == 200
        path.write_text("basic_auth_users:\n  bob: [\n")  # half written
        for _ in range(3):
            assert fetch(url, auth=("bob", PASSWORD))[0] == 200
        assert errors(caplog, "web config file changed but cannot be used") == 1
        path.write_text(TLS.replace("server", str(tmp_path / "nowhere")))  # would turn TLS on
        assert fetch(url, auth=("bob", PASSWORD))[0] == 200
        assert errors(caplog, "web config file changed but cannot be used") == 2
        path.write_text("")
        assert fetch(url)[0] == 200


def test_pem_files_with_text_around_the_blocks_load_as_openssl_reads_them(pki: Pki) -> None:
    """`openssl x509 -text` puts a description, in any encoding, before the block."""
    for name in ("described.pem", "described-ca.pem"):
        source = pki.dir / ("server.pem" if name == "described.pem" else "ca.pem")
        (pki.dir / name).write_bytes(b"subject=CN = M\xfcller \xe9\n" + source.read_bytes())
    web = web_config(
        pki,
        "described",
        "tls_server_config:\n  cert_file: described.pem\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: described-ca.pem\n",
    )
    assert web.ssl_context is not None
    assert len(web.ssl_context.get_ca_certs()) == 1


def test_handshakes_during_repeated_renewals_all_succeed(rotation: Rotation) -> None:
    both = rotation.dir / "both-cas.pem"
    both.write_text(Path(rotation.ca).read_text() + Path(rotation.renewed_ca).read_text())
    client = ssl.create_default_context(cafile=str(both))
    web = load_web_config(str(rotation.config))
    outcomes: list[str] = []
    with serving(web, current=web.latest) as port:

        def connect() -> None:
            for _ in range(15):
                try:
                    outcomes.append(str(handshake(port, client)[0]))
                except (ssl.SSLError, OSError) as error:
                    outcomes.append(type(error).__name__)

        with ThreadPoolExecutor(max_workers=6) as clients:
            running = [clients.submit(connect) for _ in range(6)]
            for renewal in range(20):
                pair = ("rotated.pem", "rotated.key") if renewal % 2 == 0 else None
                rotation.install("pki", *(pair or ("server.pem", "server.key")))
            for future in running:
                future.result()
    assert outcomes == ["TLSv1.3"] * 90


@pytest.mark.parametrize("year", [2049, 2050, 2100])
def test_expiry_is_read_from_utc_and_generalized_times(year: int) -> None:
    """RFC 5280: UTCTime up to 2049, GeneralizedTime from 2050."""
    expiry = datetime.datetime(year, 6, 30, 12, 34, 56, tzinfo=datetime.timezone.utc)
    leaf = trustme.CA().issue_cert("127.0.0.1", not_after=expiry)
    der = first_certificate_der(leaf.cert_chain_pems[0].bytes())
    assert der is not None
    assert not_after(der) == expiry.timestamp()
    assert not_after(der[:40]) is None
    assert first_certificate_der(b"no certificate here") is None
