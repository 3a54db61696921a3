"""exporter-toolkit's own web config test cases (web/tls_config_test.go and web/testdata/ of
prometheus/exporter-toolkit), each with the toolkit's outcome and ours.

The YAML is the toolkit's, file by file; the certificates are equivalents made with trustme
(an RSA server certificate for localhost signed by the CA in tls-ca-chain.pem, and two client
CAs standing for its self-signed client certificates, the second one's client with the SAN
test3). Where ours differs, `difference` says why; the README lists the same differences.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import trustme

from exporter.config.problems import ConfigError
from exporter.web.webconfig import WebConfig, load_web_config
from tests.test_webconfig import fetch, handshake, serving

STARTS = "starts"

# The toolkit's ErrorMap entries its cases expect, by the names its table uses.
TOOLKIT_ERRORS = {
    "No such file": "no such file",
    "YAML error": "yaml",
    "Invalid Cert or CertPath": "missing one of cert or cert_file",
    "Invalid Key or KeyPath": "missing one of key or key_file",
    "ClientCA set without policy": "client CA's have been configured without a Client Auth Policy",
    "Bad password": "hashedSecret too short to be a bcrypted password",
    "Unknown cipher": "unknown cipher",
    "Unknown curve": "unknown curve",
    "Unknown TLS version": "unknown TLS version",
    "No HTTP2 cipher": "TLSConfig.CipherSuites is missing an HTTP/2-required",
    "Invalid value": "invalid value for",
    "Invalid header": "can not be configured",
}


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: str
    client: str
    client2: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("toolkit")
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    server = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.RSA)
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(folder / "server.crt"), append=True)
    server.private_key_pem.write_to_path(str(folder / "server.key"))
    ca.cert_pem.write_to_path(str(folder / "tls-ca-chain.pem"))
    clients = {}
    for name, identity in (("client_selfsigned", "client"), ("client2_selfsigned", "test3")):
        client_ca = trustme.CA(key_type=trustme.KeyType.RSA)
        client_ca.cert_pem.write_to_path(str(folder / f"{name}.pem"))
        leaf = client_ca.issue_cert(identity, key_type=trustme.KeyType.RSA)
        leaf.private_key_and_cert_chain_pem.write_to_path(str(folder / f"{name}.client.pem"))
        clients[name] = str(folder / f"{name}.client.pem")
    return Pki(folder, str(folder / "tls-ca-chain.pem"), *clients.values())


def client(pki: Pki, certificate: str | None = None, **settings: object) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if certificate is not None:
        context.load_cert_chain(certificate)
    for name, value in settings.items():
        setattr(context, name, value)
    return context


def ciphers(pki: Pki, names: str) -> ssl.SSLContext:
    context = client(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    context.set_ciphers(names)
    return context


def curve(pki: Pki, name: str) -> ssl.SSLContext:
    context = client(pki)
    context.set_ecdh_curve(name)
    return context


def refused(attempt: Callable[[], object]) -> bool:
    try:
        attempt()
    except (ssl.SSLError, OSError, requests.exceptions.ConnectionError):
        return True
    return False


Check = Callable[[Pki, int], None]


def https_ok(pki: Pki, port: int) -> None:
    assert fetch(f"https://127.0.0.1:{port}/", verify=pki.ca)[0] == 200


def plain_client_refused(pki: Pki, port: int) -> None:
    assert refused(lambda: fetch(f"http://127.0.0.1:{port}/")) or (
        fetch(f"http://127.0.0.1:{port}/")[0] == 400
    )


def tls_client_refused_by_plain_http(pki: Pki, port: int) -> None:
    assert refused(lambda: fetch(f"https://127.0.0.1:{port}/", verify=pki.ca))
    assert fetch(f"http://127.0.0.1:{port}/")[0] == 200


def tls11_client_refused(pki: Pki, port: int) -> None:
    tls11 = client(pki, minimum_version=ssl.TLSVersion.MINIMUM_SUPPORTED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # what this client is about
        tls11.maximum_version = ssl.TLSVersion.TLSv1_1
    assert refused(lambda: handshake(port, tls11))
    https_ok(pki, port)


def aes128_gcm_chosen(pki: Pki, port: int) -> None:
    chosen = handshake(port, ciphers(pki, "ECDHE-RSA-AES128-GCM-SHA256"))[2]
    assert chosen == "ECDHE-RSA-AES128-GCM-SHA256"


def no_common_cipher(pki: Pki, port: int) -> None:
    assert refused(lambda: handshake(port, ciphers(pki, "ECDHE-RSA-AES256-SHA")))


def server_order_wins(pki: Pki, port: int) -> None:
    offered = ciphers(pki, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384")
    assert handshake(port, offered)[2] == "ECDHE-RSA-AES128-GCM-SHA256"


def client_order_wins(pki: Pki, port: int) -> None:
    offered = ciphers(pki, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384")
    assert handshake(port, offered)[2] == "ECDHE-RSA-AES128-GCM-SHA256"


def p521_only(pki: Pki, port: int) -> None:
    assert handshake(port, curve(pki, "secp521r1"))[0] == "TLSv1.3"
    assert refused(lambda: handshake(port, curve(pki, "secp384r1")))


def headers_served(pki: Pki, port: int) -> None:
    status, headers, _ = fetch(f"http://127.0.0.1:{port}/")
    assert status == 200
    assert {name: headers[name.lower()] for name in HEADERS} == HEADERS


HEADERS = {
    "X-Frame-Options": "deny",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-XSS-Protection": "1",
    "Content-Security-Policy": "default-src 'self' *.test.example.net",
}


def client_certificate_verified(pki: Pki, port: int) -> None:
    url = f"https://127.0.0.1:{port}/"
    assert fetch(url, verify=pki.ca, cert=pki.client)[0] == 200
    assert refused(lambda: fetch(url, verify=pki.ca))
    assert refused(lambda: fetch(url, verify=pki.ca, cert=pki.client2))


def san_accepted(pki: Pki, port: int) -> None:
    assert fetch(f"https://127.0.0.1:{port}/", verify=pki.ca, cert=pki.client2)[0] == 200


def san_refused(pki: Pki, port: int) -> None:
    assert refused(lambda: fetch(f"https://127.0.0.1:{port}/", verify=pki.ca, cert=pki.client2))


def no_client_certificate_refused(pki: Pki, port: int) -> None:
    url = f"https://127.0.0.1:{port}/"
    assert refused(lambda: fetch(url, verify=pki.ca))
    assert refused(lambda: fetch(url, verify=pki.ca, cert=pki.client))  # not a system root


def ten_requests_pass(pki: Pki, port: int) -> None:
    assert [fetch(f"http://127.0.0.1:{port}/")[0] for _ in range(11)] == [200] * 11


@dataclass(frozen=True)
class Case:
    file: str  # the toolkit's testdata file
    yaml: str
    toolkit: str  # STARTS, or the name of the error its table expects
    ours: str  # STARTS, or a part of the problem we report
    checks: tuple[Check, ...] = ()
    difference: str = ""  # why ours differs from the toolkit's


TLS = 'tls_server_config:\n  cert_file: "server.crt"\n  key_file: "server.key"\n'
IF_GIVEN = '  client_auth_type: "VerifyClientCertIfGiven"\n'
PYTHON_CANNOT = "Python's ssl module cannot do it"

CASES = [
    Case("web_config_empty.yml", "", STARTS, STARTS, (tls_client_refused_by_plain_http,)),
    Case(
        "web_config_junk.yml",
        "hWkNKCp3fvIx3jKnsaBI\nTuEjdwNS8A2vYdFbiKqr\nay3RiOtykgt4m6m3KOol\n",
        "YAML error",
        "the top level must be a mapping of keys",
    ),
    Case(
        "web_config_junk_key.yml",
        'tls_server_config:\n  cert_filse: "server.crt"\n',
        "YAML error",
        "tls_server_config.cert_filse: unknown key",
    ),
    Case(
        "web_config_noAuth_certPath_empty.bad.yml",
        'tls_server_config:\n  cert_file: ""\n  key_file: "server.key"\n',
        "Invalid Cert or CertPath",
        "missing one of cert or cert_file",
    ),
    Case(
        "web_config_noAuth_cert_empty.bad.yml",
        'tls_server_config:\n  cert: ""\n  key_file: "server.key"\n',
        "Invalid Cert or CertPath",
        "missing one of cert or cert_file",
    ),
    Case(
        "web_config_noAuth_keyPath_empty.bad.yml",
        'tls_server_config:\n  cert_file: "server.crt"\n  key_file: ""\n',
        "Invalid Key or KeyPath",
        "missing one of key or key_file",
    ),
    Case(
        "web_config_noAuth_key_empty.bad.yml",
        'tls_server_config:\n  cert_file: "server.crt"\n  key: ""\n',
        "Invalid Key or KeyPath",
        "missing one of key or key_file",
    ),
    Case(
        "web_config_noAuth_certPath_keyPath_empty.bad.yml",
        'tls_server_config:\n  cert_file: ""\n  key_file: ""\n  client_auth_type: "x"\n',
        "Invalid Cert or CertPath",
        'client_auth_type: "x" is not one of',  # the section stops at an unknown value
    ),
    Case(
        "web_config_noAuth_certPath_invalid.bad.yml",
        'tls_server_config:\n  cert_file: "somefile"\n  key_file: "server.key"\n',
        "No such file",
        "somefile: No such file or directory",
    ),
    Case(
        "web_config_noAuth_keyPath_invalid.bad.yml",
        'tls_server_config:\n  cert_file: "server.cert"\n  key_file: "somefile"\n',
        "No such file",
        "No such file or directory",
    ),
    Case(
        "web_config_noAuth_certPath_keyPath_invalid.bad.yml",
        'tls_server_config:\n  cert_file: "somefile"\n  key_file: "somefile"\n',
        "No such file",
        "somefile: No such file or directory",
    ),
    Case(
        "web_config_noAuth.bad.yml",
        TLS + '  client_ca_file: "/dev/null"\n',
        "ClientCA set without policy",
        "a client CA is set but client_auth_type is NoClientCert",
    ),
    Case(
        "web_config_auth_clientCAs_invalid.bad.yml",
        TLS + '  client_ca_file: "somefile"\n',
        "No such file",
        "a client CA is set but client_auth_type is NoClientCert",  # checked before reading
    ),
    Case(
        "web_config_auth_user_list_invalid.bad.yml",
        TLS + "basic_auth_users:\n  john: doe\n",
        "Bad password",
        "basic_auth_users.john: not a bcrypt hash",
    ),
    Case(
        "web_config_noAuth_inventedCiphers.bad.yml",
        TLS + IF_GIVEN + "  cipher_suites:\n  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048\n",
        "Unknown cipher",
        'unknown cipher suite "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048"',
    ),
    Case(
        "web_config_noAuth_inventedCurves.bad.yml",
        TLS + IF_GIVEN + "  curve_preferences:\n    - CurveP257\n",
        "Unknown curve",
        'unknown curve "CurveP257"',
    ),
    Case(
        "web_config_noAuth_wrongTLSVersion.bad.yml",
        TLS + IF_GIVEN + "  min_version: TLS111\n",
        "Unknown TLS version",
        '"TLS111" is not one of TLS10, TLS11, TLS12, TLS13',
    ),
    Case(
        "web_config_noAuth.good.yml",
        TLS + IF_GIVEN,
        STARTS,
        STARTS,
        (https_ok, plain_client_refused, tls11_client_refused),
    ),
    Case(
        "web_config_noAuth_tlsInline.good.yml",
        "tls_server_config:\n  cert: |\n{server.crt}  key: |\n{server.key}" + IF_GIVEN,
        STARTS,
        STARTS,
        (https_ok,),
    ),
    Case(
        "web_config_noAuth_allCiphers.good.yml",
        TLS
        + IF_GIVEN
        + "  cipher_suites:\n"
        + "".join(
            f"  - {name}\n"
            for name in (
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
                "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
                "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
                "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
            )
        ),
        STARTS,
        STARTS,
        (https_ok,),
    ),
    Case(
        "web_config_noAuth_someCiphers.good.yml",
        TLS
        + IF_GIVEN
        + "  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
        + "  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n  min_version: TLS12\n  max_version: TLS12\n",
        STARTS,
        STARTS,
        (aes128_gcm_chosen, no_common_cipher, server_order_wins),
    ),
    Case(
        "web_config_noAuth_someCiphers_noOrder.good.yml",
        TLS
        + IF_GIVEN
        + "  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n"
        + "  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n  prefer_server_cipher_suites: false\n"
        + "  min_version: TLS12\n  max_version: TLS12\n",
        STARTS,
        STARTS,
        (client_order_wins,),
    ),
    Case(
        "web_config_noAuth_allCurves.good.yml",
        TLS + IF_GIVEN + "  curve_preferences:\n    - CurveP256\n    - CurveP384\n"
        "    - CurveP521\n    - X25519\n",
        STARTS,
        "can limit the key exchange to one curve only",
        difference=PYTHON_CANNOT + ": it sets a single curve",
    ),
    Case(
        "web_config_noAuth_someCurves.good.yml",
        TLS + IF_GIVEN + "  min_version: TLS13\n  curve_preferences:\n  - CurveP521\n",
        STARTS,
        STARTS,
        (p521_only,),
    ),
    Case(
        "web_config_noAuth_noHTTP2.good.yml",
        TLS + IF_GIVEN + "  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n"
        "  max_version: TLS12\nhttp_server_config:\n  http2: false\n",
        STARTS,
        STARTS,
        (https_ok,),
    ),
    Case(
        "web_config_noAuth_noHTTP2Cipher.bad.yml",
        TLS + IF_GIVEN + "  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n"
        "  max_version: TLS12\n",
        "No HTTP2 cipher",
        "TLSConfig.CipherSuites is missing an HTTP/2-required AES_128_GCM_SHA256 cipher",
    ),
    Case(
        "web_config_headers.good.yml",
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        "    Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
        "    X-Content-Type-Options: nosniff\n    X-XSS-Protection: 1\n"
        "    Content-Security-Policy: \"default-src 'self' *.test.example.net\"\n",
        STARTS,
        STARTS,
        (headers_served,),
    ),
    Case(
        "web_config_headers_content_type_options.bad.yml",
        "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
        "Invalid value",
        '"sniff" is not one of nosniff',
    ),
    Case(
        "web_config_headers_frame_options.bad.yml",
        "http_server_config:\n  headers:\n    X-Frame-Options: foo\n",
        "Invalid value",
        '"foo" is not one of deny, sameorigin',
    ),
    Case(
        "web_config_headers_extra_header.bad.yml",
        "http_server_config:\n  headers:\n    Content-Type: foo\n",
        "Invalid header",
        "headers.Content-Type: this header cannot be set",
    ),
    Case(
        "tls_config_noAuth.requireanyclientcert.good.yml",
        TLS + '  client_auth_type: "RequireAnyClientCert"\n',
        STARTS,
        "RequireAnyClientCert cannot be honoured",
        difference=PYTHON_CANNOT + ": OpenSSL verifies every client certificate it asks for",
    ),
    Case(
        "tls_config_noAuth.requireanyclientcertkeyinline.good.yml",
        'tls_server_config:\n  cert_file: "server.crt"\n  key: |\n{server.key}'
        '  client_auth_type: "RequireAnyClientCert"\n',
        STARTS,
        "RequireAnyClientCert cannot be honoured",
        difference=PYTHON_CANNOT + ": OpenSSL verifies every client certificate it asks for",
    ),
    Case(
        "tls_config_noAuth.requireandverifyclientcert.good.yml",
        TLS + '  client_auth_type: "RequireAndVerifyClientCert"\n'
        '  client_ca_file: "client_selfsigned.pem"\n',
        STARTS,
        STARTS,
        (client_certificate_verified,),
    ),
    Case(
        "web_config_auth_client_san.good.yaml",
        TLS + '  client_auth_type: "RequireAndVerifyClientCert"\n'
        '  client_ca_file: "client2_selfsigned.pem"\n'
        '  client_allowed_sans:\n    - "one"\n    - "test3"\n    - "two"\n',
        STARTS,
        STARTS,
        (san_accepted,),
    ),
    Case(
        "web_config_auth_client_san.bad.yaml",
        TLS + '  client_auth_type: "RequireAndVerifyClientCert"\n'
        '  client_ca_file: "client2_selfsigned.pem"\n  client_allowed_sans:\n    - "bad"\n',
        STARTS,
        STARTS,
        (san_refused,),
    ),
    Case(
        "web_config_noAuth.good.blocking.yml",
        TLS + '  client_auth_type: "RequireAndVerifyClientCert"\n',
        STARTS,
        STARTS,
        (no_client_certificate_refused,),
    ),
    Case(
        "web_config_auth_clientCAs_missing.bad.yml",
        TLS + '  client_auth_type: "RequireAndVerifyClientCert"\n',
        STARTS,
        STARTS,
        (no_client_certificate_refused,),
    ),
    Case(
        "web_config_rate_limiter_nonblocking.yaml",
        "rate_limit:\n  interval: 0\n  burst: 0\n",
        STARTS,
        STARTS,
        (ten_requests_pass,),
    ),
    Case(
        "web_config_rate_limiter_one_second.yaml",
        'rate_limit:\n  interval: "1s"\n  burst: 0\n',
        STARTS,
        "rate_limit.burst: must be at least 1 when interval is set",
        difference="a burst of 0 refuses every request (429); refused at start instead",
    ),
    Case(
        "web_config_users.good.yml",
        TLS
        + "basic_auth_users:\n"
        + "  alice: $2y$12$1DpfPeqF9HzHJt.EWswy1exHluGfbhnn3yXhR7Xes6m3WJqFg0Wby\n"
        + "  bob: $2y$18$4VeFDzXIoPHKnKTU3O3GH.N.vZu06CVqczYZ8WvfzrddFU6tGqjR.\n",
        STARTS,
        "basic_auth_users.bob: a bcrypt cost from 4 to 16",
        difference="a bcrypt cost over 16 takes seconds a check; checks wait for each other",
    ),
]


def loaded(pki: Pki, case: Case) -> WebConfig:
    text = case.yaml
    for name in ("server.crt", "server.key"):
        pem = (pki.dir / name).read_text()
        text = text.replace(
            "{" + name + "}", "".join(f"    {line}\n" for line in pem.split("\n")[:-1])
        )
    path = pki.dir / case.file
    path.write_text(text)
    return load_web_config(str(path))


@pytest.mark.parametrize("case", CASES, ids=[case.file for case in CASES])
def test_the_toolkit_outcome_is_ours_or_a_listed_difference(pki: Pki, case: Case) -> None:
    if case.ours == STARTS:
        loaded(pki, case)
    else:
        with pytest.raises(ConfigError) as raised:
            loaded(pki, case)
        assert any(case.ours in problem for problem in raised.value.problems), raised.value
    assert case.toolkit == STARTS or case.toolkit in TOOLKIT_ERRORS
    assert ((case.toolkit == STARTS) == (case.ours == STARTS)) != bool(case.difference)


SERVED = [case for case in CASES if case.checks]


@pytest.mark.parametrize("case", SERVED, ids=[case.file for case in SERVED])
def test_the_toolkit_client_cases_behave_alike(pki: Pki, case: Case) -> None:
    web = loaded(pki, case)
    with serving(web) as port:
        for check in case.checks:
            check(pki, port)
