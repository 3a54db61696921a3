"""The Helm chart in charts/cognito-import-exporter, linted and rendered by the real helm.

Every scenario of the chart's ci/ folder (and the chart's own defaults) renders objects that
validate against the Kubernetes API schemas (the Prometheus Operator's against the fields of
its CRDs the chart writes) and pods that pass the restricted Pod Security profile; the
schema refuses bad values with its own message; the PrometheusRule carries the mixin's rules;
the probes answer when basic auth is on.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import ssl
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import trustme
import yaml

from exporter import __version__
from exporter.cli import build_parser
from exporter.web.tls import (
    CIPHER_SUITES,
    CLIENT_AUTH_TYPES,
    CURVES,
    TLS13_CIPHER_SUITES,
    TLS_VERSIONS,
    TlsServerConfig,
)
from exporter.web.webconfig import RESPONSE_HEADERS
from tests.pod_security import restricted_violations
from tests.tools import config_check, free_port, require_tool, wait_until

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "cognito-import-exporter"
SCENARIOS = sorted(path.name for path in (CHART / "ci").glob("*-values.yaml"))
ALERTS_FILE = REPO / "prometheus" / "alerts.yml"
OPERATOR_SCHEMA_FILE = REPO / "tests" / "testdata" / "prometheus-operator-v1.schema.json"

RELEASE = "cie"
NAMESPACE = "monitoring"
FULLNAME = "cie-cognito-import-exporter"
OPERATOR_API = "monitoring.coreos.com/v1"
# The oldest release the chart's kubeVersion allows, and a recent one.
KUBERNETES_VERSIONS = ("1.25", "1.33")
NONROOT_UID = 65532
SCRAPE_JOB = "cognito-import-exporter"
# The password whose bcrypt hash ci/web-config-inline-values.yaml holds.
CI_PASSWORD = "example-password"
CI_PASSWORD_HASH = "$2b$10$QMA0xfZLdcfpNdISuNiyy.qaf0eT5axKYRmkBTinxcUBlcLCHVU/K"
SELECTOR_LABELS = {
    "app.kubernetes.io/name": "cognito-import-exporter",
    "app.kubernetes.io/instance": RELEASE,
}

Json = dict[str, Any]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("helm"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def values_args(scenario: str | None) -> list[str]:
    return ["-f", str(CHART / "ci" / scenario)] if scenario else []


@cache
def rendered(scenario: str | None) -> tuple[Json, ...]:
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args(scenario))
    assert result.returncode == 0, result.stderr
    return tuple(document for document in yaml.safe_load_all(result.stdout) if document)


def the_one(objects: tuple[Json, ...], kind: str) -> Json:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def kinds(objects: tuple[Json, ...]) -> list[tuple[str, str]]:
    return sorted((obj["kind"], obj["metadata"]["name"]) for obj in objects)


def pod_spec(objects: tuple[Json, ...]) -> Json:
    spec: Json = the_one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def exporter_container(objects: tuple[Json, ...]) -> Json:
    (container,) = pod_spec(objects)["containers"]
    return dict(container)


def volumes(objects: tuple[Json, ...]) -> dict[str, Json]:
    return {volume["name"]: volume for volume in pod_spec(objects)["volumes"]}


def mounts(objects: tuple[Json, ...]) -> dict[str, Json]:
    return {mount["name"]: mount for mount in exporter_container(objects)["volumeMounts"]}


@cache
def operator_validator(kind: str) -> jsonschema.protocols.Validator:
    document = json.loads(OPERATOR_SCHEMA_FILE.read_text(encoding="utf-8"))
    schema = {**document, "$ref": f"#/{kind}"}
    return jsonschema.Draft202012Validator(schema)


def operator_errors(obj: Json) -> list[str]:
    return [error.message for error in operator_validator(obj["kind"]).iter_errors(obj)]


# --- the chart as a whole ------------------------------------------------------------


def test_chart_version_and_app_version_follow_the_exporter() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))

    assert (chart["version"], chart["appVersion"]) == (__version__, __version__)


def test_the_ci_folder_holds_every_scenario() -> None:
    assert SCENARIOS == [
        "default-values.yaml",
        "existing-secret-config-values.yaml",
        "extras-values.yaml",
        "monitoring-values.yaml",
        "probe-values.yaml",
        "pvc-storage-values.yaml",
        "web-config-basic-auth-values.yaml",
        "web-config-inline-values.yaml",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", [None, *SCENARIOS])
def test_helm_lint_strict_passes(scenario: str | None) -> None:
    result = helm("lint", "--strict", str(CHART), *values_args(scenario))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", [None, *SCENARIOS])
def test_rendered_objects_validate_strictly(scenario: str | None, kubernetes_version: str) -> None:
    objects = rendered(scenario)
    core = [obj for obj in objects if obj["apiVersion"] != OPERATOR_API]
    operator = [obj for obj in objects if obj["apiVersion"] == OPERATOR_API]

    validated = {
        (obj["kind"], obj["metadata"]["name"]): kubernetes_validate.validate(
            obj, kubernetes_version, strict=True
        )
        for obj in core
    }

    assert set(validated.values()) == {kubernetes_version}
    assert {(obj["kind"], obj["metadata"]["name"]): operator_errors(obj) for obj in operator} == {
        (obj["kind"], obj["metadata"]["name"]): [] for obj in operator
    }
    assert [kind for kind, _ in validated].count("Deployment") == 1


@pytest.mark.slow
def test_the_operator_schema_refuses_a_misspelt_field() -> None:
    monitor = the_one(rendered("monitoring-values.yaml"), "ServiceMonitor")
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["relabellings"] = []
    broken["spec"]["endpoints"][0]["interval"] = "one minute"

    assert sorted(operator_errors(broken)) == [
        "'one minute' does not match '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
        "(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'",
        "Additional properties are not allowed ('relabellings' was unexpected)",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", [None, *SCENARIOS])
def test_pods_pass_the_restricted_pod_security_profile(scenario: str | None) -> None:
    objects = rendered(scenario)

    assert restricted_violations(pod_spec(objects)) == []
    assert pod_spec(objects)["automountServiceAccountToken"] is False


@pytest.mark.slow
def test_the_restricted_check_names_each_broken_rule() -> None:
    spec = json.loads(json.dumps(pod_spec(rendered("default-values.yaml"))))
    spec["hostNetwork"] = True
    spec["volumes"].append({"name": "host", "hostPath": {"path": "/var/run"}})
    spec["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    context = spec["containers"][0]["securityContext"]
    context["allowPrivilegeEscalation"] = True
    context["runAsNonRoot"] = False
    context["capabilities"] = {"drop": ["NET_RAW"], "add": ["SYS_ADMIN", "NET_BIND_SERVICE"]}
    del context["seccompProfile"]
    spec["containers"][0]["ports"][0]["hostPort"] = 10209

    assert restricted_violations(spec) == [
        "spec.hostNetwork: must be false",
        "spec.volumes[3]: hostPath is not allowed",
        "spec.securityContext.seccompProfile.type: Unconfined is not allowed",
        "spec.containers[0].securityContext.allowPrivilegeEscalation: must be false",
        "spec.containers[0].securityContext.runAsNonRoot: must be true",
        "spec.containers[0].securityContext.capabilities.drop: must include ALL",
        "spec.containers[0].securityContext.capabilities.add: SYS_ADMIN is not allowed",
        "spec.containers[0].ports[0].hostPort: must be unset or 0",
    ]


# --- the schema refusing bad values ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            ["logLevel=trace"],
            "at '/logLevel': value must be one of 'debug', 'info', 'warn', 'error'",
        ),
        (["replicas=two"], "at '/replicas': got string, want integer"),
        (["storage.type=hostPath"], "at '/storage/type': value must be one of"),
        (["serviceMonitor.enable=true"], "additional properties 'enable' not allowed"),
        (
            ["serviceMonitor.interval=1 minute"],
            "at '/serviceMonitor/interval': '1 minute' does not match",
        ),
        (["serviceMonitor.targets[0].poolId=customers"], "'customers' does not match pattern"),
        (
            ["webConfig.scheme=https"],
            "at '/webConfig/scheme': value must be one of 'HTTP', 'HTTPS'",
        ),
        (["webConfig.inline.basic_auth_users.prometheus=secret"], "does not match pattern"),
        (
            [
                "webConfig.inline.basic_auth_users.prometheus="
                + CI_PASSWORD_HASH.replace("$10$", "$17$"),
                "webConfig.basicAuth.existingSecret=scrape-auth",
            ],
            "at '/webConfig/inline/basic_auth_users/prometheus': '$2b$17$",
        ),
        (["probes.handler=grpc"], "at '/probes/handler': value must be one of"),
        (["extraArgs[0]=debug"], "at '/extraArgs/0': 'debug' does not match pattern '^--'"),
        (["image.digest=latest"], "at '/image/digest': 'latest' does not match pattern"),
        (["resources.limits.memory=lots"], "at '/resources/limits/memory'"),
        (["config.existingSecret=a", "config.existingConfigMap=b"], "at '/config': 'not' failed"),
        (
            ["storage.type=persistentVolumeClaim", "replicas=2"],
            "at '/replicas': maximum: got 2, want 1",
        ),
        (
            ["probes.handler=exec"],
            "at '/webConfig/basicAuth/existingSecret': minLength: got 0, want 1",
        ),
        (
            ["webConfig.inline.tls_server_config.cert_file=tls.crt"],
            "at '/webConfig/scheme': value must be 'HTTPS'",
        ),
        (
            [
                "webConfig.scheme=HTTPS",
                "webConfig.inline.tls_server_config.client_auth_type=RequireAndVerifyClientCert",
            ],
            "at '/probes/handler': value must be 'tcpSocket'",
        ),
        (
            [f"webConfig.inline.basic_auth_users.prometheus={CI_PASSWORD_HASH}"],
            "at '/probes/handler': value must be 'tcpSocket'",
        ),
        # what the exporter refuses at start (README: Deliberate differences)
        (
            [
                "webConfig.scheme=HTTPS",
                "webConfig.inline.tls_server_config.client_auth_type=RequireAnyClientCert",
            ],
            "at '/webConfig/inline/tls_server_config/client_auth_type': value must be one of",
        ),
        (
            ["webConfig.inline.tls_server_config.min_version=TLS10"],
            "at '/webConfig/inline/tls_server_config/min_version': value must be one of "
            "'TLS12', 'TLS13'",
        ),
        (
            [
                "webConfig.inline.tls_server_config.curve_preferences[0]=X25519",
                "webConfig.inline.tls_server_config.curve_preferences[1]=CurveP256",
            ],
            "at '/webConfig/inline/tls_server_config/curve_preferences': maxItems: got 2, want 1",
        ),
        (
            ["webConfig.inline.tls_server_config.cipher_suites[0]=TLS_RSA_WITH_RC4_128_SHA"],
            "at '/webConfig/inline/tls_server_config/cipher_suites/0': value must be one of",
        ),
        (
            ["webConfig.inline.tls_server_config.min_verison=TLS13"],
            "additional properties 'min_verison' not allowed",
        ),
        (
            ["webConfig.inline.http_server_config.http_2=false"],
            "additional properties 'http_2' not allowed",
        ),
        (
            ["webConfig.inline.http_server_config.headers.Server=exporter"],
            "additional properties 'Server' not allowed",
        ),
        (
            ["webConfig.inline.http_server_config.headers.X-Frame-Options=allow"],
            "at '/webConfig/inline/http_server_config/headers/X-Frame-Options': value must be",
        ),
        (
            ["webConfig.inline.rate_limit.interval=1s"],
            "at '/webConfig/inline/rate_limit': missing property 'burst'",
        ),
        (
            ["webConfig.inline.rate_limit.interval=1s", "webConfig.inline.rate_limit.burst=0"],
            "at '/webConfig/inline/rate_limit/burst': minimum: got 0, want 1",
        ),
        (
            [
                "webConfig.inline.tls_server_config.min_version=TLS13",
                "webConfig.inline.tls_server_config.max_version=TLS12",
            ],
            "at '/webConfig/inline/tls_server_config': 'not' failed",
        ),
        (
            ["webConfig.inline.tls_server_config.client_allowed_sans[0]=prometheus"],
            "at '/webConfig/inline/tls_server_config': missing property 'client_auth_type'",
        ),
        (
            ["webConfig.inline.rate_limit.brust=5"],
            "additional properties 'brust' not allowed",
        ),
        # a relative file name the chart's Secret would not hold
        (
            [
                "webConfig.scheme=HTTPS",
                "webConfig.inline.tls_server_config.cert_file=tls.crt",
                "webConfig.inline.tls_server_config.key_file=tls.key",
            ],
            "at '/webConfig/tls/existingSecret': minLength: got 0, want 1",
        ),
        (
            [
                "webConfig.scheme=HTTPS",
                "webConfig.tls.existingSecret=web-tls",
                "webConfig.inline.tls_server_config.cert_file=server.pem",
            ],
            "at '/webConfig/inline/tls_server_config/cert_file': 'anyOf' failed",
        ),
        (["webConfig.tls.existingSecret=web-tls"], "at '/webConfig': 'anyOf' failed"),
        # the chart's own flags
        (["extraArgs[0]=--web.listen-address=:9100"], "at '/extraArgs/0': 'not' failed"),
        (["extraArgs[0]=--config.file=/x.yaml"], "at '/extraArgs/0': 'not' failed"),
        (["extraArgs[0]=--web.config.file=/w.yml"], "at '/extraArgs/0': 'not' failed"),
        (["extraArgs[0]=--storage.path"], "at '/extraArgs/0': 'not' failed"),
        # static secrets in a ConfigMap
        (
            [
                "config.inline.credentials.static.access_key_id=AKIAIOSFODNN7EXAMPLE",
                "config.inline.credentials.static.secret_access_key=wJalrXUtnFEMIEXAMPLEKEY",
            ],
            "at '/config/secret': value must be true",
        ),
        (
            ["config.secret=false", "config.inline.credentials.static.session_token=token"],
            "at '/config/secret': value must be true",
        ),
        (
            ["config.inline.credentials.role.external_id=shared"],
            "at '/config/secret': value must be true",
        ),
        (
            [
                "config.inline.credentials.static.access_key_id=AKIAIOSFODNN7EXAMPLE",
                "config.inline.credentials.static.secret_access_key=${SECRET:-wJalrXUtnFEMI}",
            ],
            "at '/config/secret': value must be true",
        ),
        (["livenessProbe.successThreshold=2"], "at '/livenessProbe/successThreshold'"),
        (
            ["readinessProbe.terminationGracePeriodSeconds=10"],
            "additional properties 'terminationGracePeriodSeconds' not allowed",
        ),
        (
            [
                "serviceAccount.create=false",
                "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/x",
            ],
            "at '/serviceAccount/annotations': maxProperties: got 1, want 0",
        ),
        (
            ["serviceAccount.create=false", "serviceAccount.labels.team=identity"],
            "at '/serviceAccount/labels': maxProperties: got 1, want 0",
        ),
        (
            [
                f"webConfig.inline.basic_auth_users.prometheus={CI_PASSWORD_HASH}",
                "webConfig.basicAuth.existingSecret=scrape-auth",
                "probes.handler=httpGet",
            ],
            "at '/probes/handler': 'not' failed",
        ),
        (
            ["webConfig.basicAuth.existingSecret=scrape-auth", "probes.handler=httpGet"],
            "at '/probes/handler': 'not' failed",
        ),
        (
            [
                "webConfig.existingSecret=web",
                "webConfig.inline.http_server_config.http2=false",
            ],
            "at '/webConfig': 'not' failed",
        ),
    ],
)
def test_the_schema_refuses_bad_values(settings: list[str], message: str) -> None:
    sets = [argument for setting in settings for argument in ("--set", setting)]

    result = helm("template", RELEASE, str(CHART), *sets)

    assert result.returncode == 1
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


# exporter-toolkit serves HTTPS when tls_server_config sets one of these, plain HTTP otherwise
TLS_TURNED_ON_BY = (
    "cert",
    "cert_file",
    "key",
    "key_file",
    "client_ca",
    "client_ca_file",
    "client_auth_type",
)
SCHEMA_REFUSED = "values don't meet the specifications of the schema"


def template_with(*settings: str) -> subprocess.CompletedProcess[str]:
    sets = [argument for setting in settings for argument in ("--set", setting)]
    return helm("template", RELEASE, str(CHART), *sets)


@pytest.mark.slow
@pytest.mark.parametrize("setting", TLS_TURNED_ON_BY)
def test_a_tls_setting_that_turns_tls_on_is_served_over_https_only(setting: str) -> None:
    # a client authentication type the kubelet's probes can still pass; a file of extraVolumes
    value = {
        "client_auth_type": "VerifyClientCertIfGiven",
        "cert_file": "/etc/tls/x",
        "key_file": "/etc/tls/x",
        "client_ca_file": "/etc/tls/x",
    }.get(setting, "x")
    tls = f"webConfig.inline.tls_server_config.{setting}={value}"

    over_http = template_with(tls)
    over_https = template_with(tls, "webConfig.scheme=HTTPS")

    assert over_http.returncode == 1
    assert SCHEMA_REFUSED in over_http.stderr
    assert "at '/webConfig/scheme': value must be 'HTTPS'" in over_http.stderr
    assert (over_https.returncode, over_https.stderr) == (0, "")


@pytest.mark.slow
@pytest.mark.parametrize(
    "tls",
    [
        "webConfig.inline.tls_server_config.min_version=TLS13",
        "webConfig.inline.tls_server_config.cipher_suites[0]=TLS_AES_128_GCM_SHA256",
    ],
)
def test_tls_settings_that_leave_tls_off_are_served_over_http_only(tls: str) -> None:
    over_http = template_with(tls)
    over_https = template_with(tls, "webConfig.scheme=HTTPS")

    assert (over_http.returncode, over_http.stderr) == (0, "")
    assert over_https.returncode == 1
    assert SCHEMA_REFUSED in over_https.stderr
    assert "at '/webConfig/inline/tls_server_config': 'anyOf' failed" in over_https.stderr


@pytest.mark.slow
def test_https_with_an_empty_certificate_path_is_refused() -> None:
    result = template_with(
        "webConfig.scheme=HTTPS", "webConfig.inline.tls_server_config.cert_file="
    )

    assert result.returncode == 1
    assert (
        "at '/webConfig/inline/tls_server_config/cert_file': minLength: got 0, want 1"
        in result.stderr
    )


@pytest.mark.slow
def test_https_without_a_web_configuration_is_refused() -> None:
    result = template_with("webConfig.scheme=HTTPS")

    assert result.returncode == 1
    assert "at '/webConfig/inline': missing property 'tls_server_config'" in result.stderr


@pytest.mark.slow
def test_https_with_a_web_configuration_from_an_existing_secret_is_left_to_the_operator() -> None:
    # the Secret's content is not among the values: the schema cannot tell whether it turns
    # TLS on
    result = template_with("webConfig.scheme=HTTPS", "webConfig.existingSecret=web")

    assert (result.returncode, result.stderr) == (0, "")


# --- what each scenario renders -------------------------------------------------------


@pytest.mark.slow
def test_defaults_run_the_release_image_hardened_with_storage_on_an_empty_dir() -> None:
    objects = rendered("default-values.yaml")
    container = exporter_container(objects)

    assert kinds(objects) == [
        ("ConfigMap", f"{FULLNAME}-config"),
        ("Deployment", FULLNAME),
        ("Service", FULLNAME),
        ("ServiceAccount", FULLNAME),
    ]
    assert (
        container["image"]
        == f"ghcr.io/cognito-import-exporter/cognito-import-exporter:{__version__}"
    )
    assert container["args"] == [
        "--config.file=/etc/cognito-import-exporter/config/config.yaml",
        "--web.listen-address=:10209",
        "--log.level=info",
        "--log.format=json",
        "--storage.path=/var/lib/cognito-import-exporter/histories",
    ]
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": NONROOT_UID,
        "runAsGroup": NONROOT_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod_spec(objects)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": NONROOT_UID,
        "runAsGroup": NONROOT_UID,
        "fsGroup": NONROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["resources"] == {
        "requests": {"cpu": "25m", "memory": "96Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    assert volumes(objects)["storage"] == {"name": "storage", "emptyDir": {"sizeLimit": "256Mi"}}
    assert mounts(objects)["storage"]["mountPath"] == "/var/lib/cognito-import-exporter"
    assert volumes(objects)["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Mi"}


@pytest.mark.slow
def test_service_account_carries_the_irsa_role_and_mounts_no_token() -> None:
    objects = rendered("default-values.yaml")
    account = the_one(objects, "ServiceAccount")

    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/cognito-import-exporter"
    }
    assert account["automountServiceAccountToken"] is False
    assert pod_spec(objects)["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.slow
def test_inline_config_passes_the_exporters_config_check(tmp_path: Path) -> None:
    config_map = the_one(rendered("default-values.yaml"), "ConfigMap")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config_map["data"]["config.yaml"], encoding="utf-8")

    result = config_check(config_file)

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{config_file}: valid, 1 pools, 1 credential sets\n"


@pytest.mark.slow
def test_a_config_change_rolls_the_pods() -> None:
    def checksum(*settings: str) -> str:
        sets = [argument for setting in settings for argument in ("--set", setting)]
        result = helm(
            "template", RELEASE, str(CHART), "--show-only", "templates/deployment.yaml", *sets
        )
        assert result.returncode == 0, result.stderr
        annotations = yaml.safe_load(result.stdout)["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    assert checksum() == checksum()
    assert checksum() != checksum("config.inline.scrape.timeout=20s")


@pytest.mark.slow
def test_config_from_an_existing_secret_is_mounted_and_not_rendered() -> None:
    objects = rendered("existing-secret-config-values.yaml")

    assert kinds(objects) == [
        ("Deployment", FULLNAME),
        ("Service", FULLNAME),
        ("ServiceAccount", FULLNAME),
    ]
    assert volumes(objects)["config"] == {
        "name": "config",
        "secret": {"secretName": "cognito-import-exporter-config"},
    }
    assert mounts(objects)["config"] == {
        "name": "config",
        "mountPath": "/etc/cognito-import-exporter/config",
        "readOnly": True,
    }
    assert (
        "--config.file=/etc/cognito-import-exporter/config/exporter.yaml"
        in (exporter_container(objects)["args"])
    )
    annotations = the_one(objects, "Deployment")["spec"]["template"]["metadata"]
    assert "checksum/config" not in (annotations.get("annotations") or {})


@pytest.mark.slow
def test_inline_config_as_a_secret() -> None:
    result = helm("template", RELEASE, str(CHART), "--set", "config.secret=true")
    objects = tuple(document for document in yaml.safe_load_all(result.stdout) if document)

    secret = the_one(objects, "Secret")
    assert secret["metadata"]["name"] == f"{FULLNAME}-config"
    assert yaml.safe_load(secret["stringData"]["config.yaml"])["scrape"] == {"timeout": "25s"}
    assert volumes(objects)["config"]["secret"] == {"secretName": f"{FULLNAME}-config"}
    assert not [obj for obj in objects if obj["kind"] == "ConfigMap"]


@pytest.mark.slow
def test_storage_on_a_claim_the_chart_makes() -> None:
    objects = rendered("pvc-storage-values.yaml")
    claim = the_one(objects, "PersistentVolumeClaim")
    deployment = the_one(objects, "Deployment")

    assert claim["metadata"]["name"] == f"{FULLNAME}-storage"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "gp3",
        "resources": {"requests": {"storage": "128Mi"}},
    }
    assert volumes(objects)["storage"] == {
        "name": "storage",
        "persistentVolumeClaim": {"claimName": f"{FULLNAME}-storage"},
    }
    # the new pod could not mount the claim the old one holds
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["replicas"] == 1


@pytest.mark.slow
def test_storage_none_passes_no_storage_path() -> None:
    result = helm("template", RELEASE, str(CHART), "--set", "storage.type=none")
    objects = tuple(document for document in yaml.safe_load_all(result.stdout) if document)

    assert not [arg for arg in exporter_container(objects)["args"] if arg.startswith("--storage")]
    assert "storage" not in volumes(objects)


# --- web config and probes ------------------------------------------------------------


@pytest.mark.slow
def test_without_web_config_the_probes_get_the_health_endpoints() -> None:
    container = exporter_container(rendered("default-values.yaml"))

    assert container["livenessProbe"] == {
        "httpGet": {"path": "/-/healthy", "port": "metrics", "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "periodSeconds": 20,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/-/ready", "port": "metrics", "scheme": "HTTP"},
        "initialDelaySeconds": 0,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


@pytest.mark.slow
def test_web_config_from_a_secret_with_basic_auth_over_tls() -> None:
    objects = rendered("web-config-basic-auth-values.yaml")
    container = exporter_container(objects)
    (endpoint,) = the_one(objects, "ServiceMonitor")["spec"]["endpoints"]

    assert "--web.config.file=/etc/cognito-import-exporter/web/web-config.yml" in container["args"]
    assert volumes(objects)["web-config"]["secret"] == {"secretName": "cognito-import-exporter-web"}
    assert volumes(objects)["probe-auth"]["secret"] == {
        "secretName": "cognito-import-exporter-scrape-auth",
        "items": [{"key": "username", "path": "username"}, {"key": "password", "path": "password"}],
    }
    assert container["livenessProbe"]["exec"]["command"][-2:] == [
        "https://127.0.0.1:10209/-/healthy",
        "/etc/cognito-import-exporter/probe-auth",
    ]
    assert container["readinessProbe"]["exec"]["command"][-2] == "https://127.0.0.1:10209/-/ready"
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    assert endpoint["basicAuth"] == {
        "username": {"name": "cognito-import-exporter-scrape-auth", "key": "username"},
        "password": {"name": "cognito-import-exporter-scrape-auth", "key": "password"},
    }


@pytest.mark.slow
def test_inline_web_config_is_a_secret_the_exporter_accepts(tmp_path: Path) -> None:
    objects = rendered("web-config-inline-values.yaml")
    secret = the_one(objects, "Secret")
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(secret["stringData"]["web-config.yml"], encoding="utf-8")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(the_one(objects, "ConfigMap")["data"]["config.yaml"], encoding="utf-8")

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--config.check",
            f"--config.file={config_file}",
            f"--web.config.file={web_config}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )

    assert secret["metadata"]["name"] == f"{FULLNAME}-web-config"
    assert volumes(objects)["web-config"]["secret"] == {"secretName": f"{FULLNAME}-web-config"}
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    assert (
        "checksum/web-config"
        in the_one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("handler", "action"),
    [
        ("tcpSocket", {"tcpSocket": {"port": "metrics"}}),
        # httpGet: refused with basic auth (test_the_schema_refuses_bad_values)
    ],
)
def test_the_probe_handler_can_be_chosen(handler: str, action: Json) -> None:
    result = helm(
        "template",
        RELEASE,
        str(CHART),
        "-f",
        str(CHART / "ci" / "web-config-inline-values.yaml"),
        "--set",
        f"probes.handler={handler}",
    )
    objects = tuple(document for document in yaml.safe_load_all(result.stdout) if document)
    probe = exporter_container(objects)["livenessProbe"]

    assert {key: probe[key] for key in action} == action
    assert "probe-auth" not in volumes(objects)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_basic_auth_probe_answers_a_running_exporter(tmp_path: Path, scheme: str) -> None:
    """Runs the exec probe the chart renders against the exporter started with the chart's
    rendered configuration and web configuration (basic auth on; over TLS with a certificate
    for the Service's name only): 0 with the Secret's credentials, 1 with a wrong password."""
    objects = rendered("web-config-inline-values.yaml")
    command = exporter_container(objects)["readinessProbe"]["exec"]["command"]
    interpreter, *options, script, url, _ = command
    assert (interpreter, options) == ("python3", ["-I", "-S", "-c"])
    assert url == "http://127.0.0.1:10209/-/ready"
    config_file = tmp_path / "config.yaml"
    config_file.write_text(the_one(objects, "ConfigMap")["data"]["config.yaml"], encoding="utf-8")
    web = yaml.safe_load(the_one(objects, "Secret")["stringData"]["web-config.yml"])
    if scheme == "https":
        certificate = trustme.CA().issue_cert(f"{FULLNAME}.{NAMESPACE}.svc")
        certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
        certificate.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
        web["tls_server_config"] = {"cert_file": "tls.crt", "key_file": "tls.key"}
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(yaml.safe_dump(web), encoding="utf-8")
    good = tmp_path / "good"
    bad = tmp_path / "bad"
    for folder, password in ((good, CI_PASSWORD), (bad, "wrong")):
        folder.mkdir()
        (folder / "username").write_text("prometheus", encoding="utf-8")
        (folder / "password").write_text(password, encoding="utf-8")
    port = free_port()
    base_url = f"{scheme}://127.0.0.1:{port}"

    def probe(path: str, credentials: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *options, script, f"{base_url}{path}", str(credentials)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def answered() -> bool:
        assert exporter.poll() is None, (tmp_path / "exporter.log").read_text()
        return probe("/-/ready", good).returncode == 0

    with (tmp_path / "exporter.log").open("w") as log:
        exporter = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                f"--config.file={config_file}",
                f"--web.config.file={web_config}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        wait_until(answered, 30, "the readiness probe passes")
        healthy = probe("/-/healthy", good)
        refused = probe("/-/healthy", bad)
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)

    assert (healthy.returncode, healthy.stderr) == (0, "")
    assert (refused.returncode, refused.stderr) == (1, f"{base_url}/-/healthy: HTTP 401\n")


# --- monitoring -----------------------------------------------------------------------


@pytest.mark.slow
def test_service_monitor_selects_the_service_with_the_release_label() -> None:
    objects = rendered("monitoring-values.yaml")
    monitor = the_one(objects, "ServiceMonitor")
    service = the_one(objects, "Service")
    (endpoint,) = monitor["spec"]["endpoints"]

    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == SELECTOR_LABELS
    assert SELECTOR_LABELS.items() <= service["metadata"]["labels"].items()
    assert service["spec"]["selector"] == SELECTOR_LABELS
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "scheme": "http",
        "interval": "60s",
        "scrapeTimeout": "30s",
        "relabelings": [{"targetLabel": "job", "replacement": SCRAPE_JOB}],
    }
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 10209, "targetPort": "metrics", "protocol": "TCP"}
    ]


@pytest.mark.slow
def test_prometheus_rule_carries_exactly_the_alert_rule_groups() -> None:
    rule = the_one(rendered("monitoring-values.yaml"), "PrometheusRule")
    alerts = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))

    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == {"groups": alerts["groups"]}
    assert [group["name"] for group in rule["spec"]["groups"]] == [
        "cognito-user-import-jobs",
        "cognito-import-exporter",
    ]


@pytest.mark.slow
def test_probe_pattern_scrapes_each_pool_as_its_own_instance() -> None:
    monitor = the_one(rendered("probe-values.yaml"), "ServiceMonitor")
    job = {"targetLabel": "job", "replacement": SCRAPE_JOB}

    assert monitor["spec"]["endpoints"] == [
        {
            "port": "metrics",
            "path": "/exporter-metrics",
            "scheme": "http",
            "interval": "60s",
            "scrapeTimeout": "30s",
            "relabelings": [job],
        },
        {
            "port": "metrics",
            "path": "/probe",
            "params": {"target": ["eu-west-1_AbCdEf123"]},
            "scheme": "http",
            "interval": "60s",
            "scrapeTimeout": "30s",
            "relabelings": [job, {"targetLabel": "instance", "replacement": "eu-west-1_AbCdEf123"}],
        },
        {
            "port": "metrics",
            "path": "/probe",
            "params": {"target": ["us-east-1_XyZ987654"]},
            "scheme": "http",
            "interval": "5m",
            "scrapeTimeout": "50s",
            "relabelings": [job, {"targetLabel": "instance", "replacement": "us-east-1_XyZ987654"}],
        },
    ]


@pytest.mark.slow
def test_extras_reach_the_pod() -> None:
    objects = rendered("extras-values.yaml")
    container = exporter_container(objects)
    config = yaml.safe_load(the_one(objects, "ConfigMap")["data"]["config.yaml"])

    assert kinds(objects) == [
        ("ConfigMap", "cognito-import-config"),
        ("Deployment", "cognito-import"),
        ("Service", "cognito-import"),
        ("ServiceAccount", "cognito-import"),
    ]
    assert container["image"] == (
        "registry.example.com/cognito-import-exporter/cognito-import-exporter:"
        f"{__version__}@sha256:{'0123456789abcdef' * 4}"
    )
    assert container["args"][2:] == [
        "--log.level=debug",
        "--log.format=logfmt",
        "--storage.path=/var/lib/cognito-import-exporter/histories",
        "--web.timeout-offset=1",
    ]
    assert [each["name"] for each in container["env"]] == ["LEGACY_ACCESS_KEY_ID"]
    assert mounts(objects)["legacy"]["mountPath"] == "/run/secrets/legacy"
    assert config["credentials"]["legacy"]["secret_access_key_file"] == (
        "/run/secrets/legacy/secret-access-key"
    )
    assert pod_spec(objects)["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert {obj["metadata"]["labels"]["team"] for obj in objects} == {"identity"}
    assert the_one(objects, "Deployment")["spec"]["selector"]["matchLabels"] == SELECTOR_LABELS


@pytest.mark.slow
def test_no_monitoring_objects_unless_asked() -> None:
    for scenario in (None, "default-values.yaml", "pvc-storage-values.yaml"):
        assert not [obj for obj in rendered(scenario) if obj["apiVersion"] == OPERATOR_API]


# --- the README's example -------------------------------------------------------------


def readme_helm_section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return readme.split("\n## Helm chart\n", 1)[1].split("\n## ", 1)[0]


def fenced_blocks(text: str, language: str) -> list[str]:
    return [block.split("\n```", 1)[0] for block in text.split(f"```{language}\n")[1:]]


@pytest.mark.slow
def test_the_readme_install_command_installs_its_values(tmp_path: Path) -> None:
    section = readme_helm_section()
    (values,) = fenced_blocks(section, "yaml")
    (commands,) = fenced_blocks(section, "sh")
    install = shlex.split(commands.replace("\\\n", " ").splitlines()[0])
    values_file = tmp_path / "my-values.yaml"
    values_file.write_text(values, encoding="utf-8")
    assert install[:3] == ["helm", "install", "cognito-import-exporter"]
    arguments = [str(values_file) if arg == "my-values.yaml" else arg for arg in install[2:]]

    result = subprocess.run(
        [require_tool("helm"), "install", *arguments, "--dry-run=client"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    manifest = result.stdout.split("\nMANIFEST:\n", 1)[1].split("\nNOTES:\n", 1)[0]
    objects = tuple(document for document in yaml.safe_load_all(manifest) if document)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(the_one(objects, "ConfigMap")["data"]["config.yaml"], encoding="utf-8")
    check = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", f"--config.file={config_file}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )

    assert result.returncode == 0, result.stderr
    assert kinds(objects) == [
        ("ConfigMap", "cognito-import-exporter-config"),
        ("Deployment", "cognito-import-exporter"),
        ("PrometheusRule", "cognito-import-exporter"),
        ("Service", "cognito-import-exporter"),
        ("ServiceAccount", "cognito-import-exporter"),
        ("ServiceMonitor", "cognito-import-exporter"),
    ]
    assert {obj["metadata"]["namespace"] for obj in objects} == {"monitoring"}
    assert the_one(objects, "ServiceMonitor")["metadata"]["labels"]["release"] == (
        "kube-prometheus-stack"
    )
    assert (check.returncode, check.stdout) == (
        0,
        f"{config_file}: valid, 1 pools, 1 credential sets\n",
    )


@pytest.mark.slow
def test_a_probe_target_the_configuration_does_not_know_is_refused() -> None:
    probe_values = ["-f", str(CHART / "ci" / "probe-values.yaml")]
    typo = ["--set", "serviceMonitor.targets[0].poolId=eu-west-1_Typo"]

    refused = helm("template", RELEASE, str(CHART), *probe_values, *typo)
    allowed = helm(
        "template",
        RELEASE,
        str(CHART),
        *probe_values,
        *typo,
        "--set",
        "config.inline.probe.allow_unlisted=true",
    )

    assert refused.returncode == 1
    assert (
        "serviceMonitor.targets: eu-west-1_Typo is not among config.inline.pools (and the "
        "configuration has no discovery or probe.allow_unlisted), so /probe would answer 404"
    ) in refused.stderr
    assert allowed.returncode == 0, allowed.stderr


# --- values the attack on the chart found -----------------------------------------------


def schema_definitions() -> Json:
    schema: Json = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    definitions: Json = schema["definitions"]
    return definitions


def test_the_schemas_tls_choices_are_the_exporters() -> None:
    tls = schema_definitions()["tlsServerConfig"]["properties"]

    assert set(tls) == set(TlsServerConfig.model_fields)
    assert tls["client_auth_type"]["enum"] == list(CLIENT_AUTH_TYPES)
    assert tls["min_version"]["enum"] == [
        name for name, version in TLS_VERSIONS.items() if version >= ssl.TLSVersion.TLSv1_2
    ]
    assert tls["max_version"]["enum"] == tls["min_version"]["enum"]
    assert set(tls["cipher_suites"]["items"]["enum"]) == set(CIPHER_SUITES) | TLS13_CIPHER_SUITES
    assert tls["curve_preferences"]["items"]["enum"] == list(CURVES)
    assert tls["curve_preferences"]["maxItems"] == 1


def test_the_schemas_response_headers_are_the_exporters() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    web = schema["properties"]["webConfig"]["properties"]["inline"]["properties"]
    headers = web["http_server_config"]["properties"]["headers"]["properties"]

    assert list(headers) == list(RESPONSE_HEADERS)
    assert {
        name: headers[name]["enum"] for name, allowed in RESPONSE_HEADERS.items() if allowed
    } == {name: ["", *allowed] for name, allowed in RESPONSE_HEADERS.items() if allowed}


def service_monitor_timings(*settings: str) -> list[tuple[str, str | None]]:
    result = template_with("serviceMonitor.enabled=true", *settings)
    assert result.returncode == 0, result.stderr
    objects = tuple(document for document in yaml.safe_load_all(result.stdout) if document)
    monitor = the_one(objects, "ServiceMonitor")
    assert operator_errors(monitor) == []
    return [
        (endpoint["interval"], endpoint.get("scrapeTimeout"))
        for endpoint in monitor["spec"]["endpoints"]
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "timings"),
    [
        (["serviceMonitor.interval=15s"], [("15s", "15s")]),
        (["serviceMonitor.interval=1m"], [("1m", "30s")]),
        (["serviceMonitor.interval=29s999ms"], [("29s999ms", "29s999ms")]),
        (["serviceMonitor.interval=1h", "serviceMonitor.scrapeTimeout=1m30s"], [("1h", "1m30s")]),
        (["serviceMonitor.interval=1m", "serviceMonitor.scrapeTimeout=2m"], [("1m", "1m")]),
        (["serviceMonitor.scrapeTimeout="], [("60s", None)]),
        (
            [
                "config.inline.pools[0].id=eu-west-1_AbCdEf123",
                "serviceMonitor.targets[0].poolId=eu-west-1_AbCdEf123",
                "serviceMonitor.targets[0].interval=10s",
                "serviceMonitor.targets[1].poolId=eu-west-1_AbCdEf123",
                "serviceMonitor.targets[1].scrapeTimeout=90s",
            ],
            [("60s", "30s"), ("10s", "10s"), ("60s", "60s")],
        ),
    ],
)
def test_no_scrape_timeout_exceeds_its_interval(
    settings: list[str], timings: list[tuple[str, str | None]]
) -> None:
    # the Prometheus Operator refuses the whole ServiceMonitor when one endpoint's would
    assert service_monitor_timings(*settings) == timings


@pytest.mark.slow
def test_inline_tls_files_come_from_a_kubernetes_tls_secret(tmp_path: Path) -> None:
    result = template_with(
        "config.inline.pools[0].id=eu-west-1_AbCdEf123",
        "webConfig.scheme=HTTPS",
        "webConfig.tls.existingSecret=web-tls",
        "webConfig.inline.tls_server_config.cert_file=tls.crt",
        "webConfig.inline.tls_server_config.key_file=tls.key",
    )
    objects = tuple(document for document in yaml.safe_load_all(result.stdout) if document)
    # the projected volume, as the kubelet would fill it: the chart's Secret and cert-manager's
    web_dir = tmp_path / "web"
    web_dir.mkdir()
    web_config = web_dir / "web-config.yml"
    web_config.write_text(the_one(objects, "Secret")["stringData"]["web-config.yml"], "utf-8")
    certificate = trustme.CA().issue_cert(f"{FULLNAME}.{NAMESPACE}.svc")
    certificate.cert_chain_pems[0].write_to_path(str(web_dir / "tls.crt"))
    certificate.private_key_pem.write_to_path(str(web_dir / "tls.key"))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(the_one(objects, "ConfigMap")["data"]["config.yaml"], "utf-8")

    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--config.check",
            f"--config.file={config_file}",
            f"--web.config.file={web_config}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )

    assert result.returncode == 0, result.stderr
    assert volumes(objects)["web-config"] == {
        "name": "web-config",
        "projected": {
            "sources": [
                {"secret": {"name": f"{RELEASE}-cognito-import-exporter-web-config"}},
                {"secret": {"name": "web-tls"}},
            ]
        },
    }
    assert mounts(objects)["web-config"]["mountPath"] == "/etc/cognito-import-exporter/web"
    assert (check.returncode, check.stderr) == (0, ""), check.stdout
    kubernetes_validate.validate(the_one(objects, "Deployment"), KUBERNETES_VERSIONS[-1], True)


@pytest.mark.slow
def test_a_storage_class_of_dash_means_no_class() -> None:
    result = template_with(
        "storage.type=persistentVolumeClaim", "storage.persistentVolumeClaim.storageClassName=-"
    )
    objects = tuple(document for document in yaml.safe_load_all(result.stdout) if document)
    claim = the_one(objects, "PersistentVolumeClaim")

    assert result.returncode == 0, result.stderr
    assert claim["spec"]["storageClassName"] == ""
    kubernetes_validate.validate(claim, KUBERNETES_VERSIONS[-1], True)


@pytest.mark.slow
def test_the_probe_fields_kubernetes_allows_are_accepted() -> None:
    result = template_with(
        "readinessProbe.successThreshold=2", "livenessProbe.terminationGracePeriodSeconds=10"
    )
    objects = tuple(document for document in yaml.safe_load_all(result.stdout) if document)
    container = exporter_container(objects)

    assert result.returncode == 0, result.stderr
    assert container["readinessProbe"]["successThreshold"] == 2
    assert container["livenessProbe"]["terminationGracePeriodSeconds"] == 10
    kubernetes_validate.validate(the_one(objects, "Deployment"), KUBERNETES_VERSIONS[-1], True)


@pytest.mark.slow
def test_static_aws_keys_are_accepted_into_a_secret() -> None:
    result = template_with(
        "config.secret=true",
        "config.inline.credentials.static.access_key_id=AKIAIOSFODNN7EXAMPLE",
        "config.inline.credentials.static.secret_access_key=wJalrXUtnFEMIEXAMPLEKEY",
    )
    objects = tuple(document for document in yaml.safe_load_all(result.stdout) if document)

    assert result.returncode == 0, result.stderr
    assert not [obj for obj in objects if obj["kind"] == "ConfigMap"]
    assert "wJalrXUtnFEMIEXAMPLEKEY" in the_one(objects, "Secret")["stringData"]["config.yaml"]


@pytest.mark.slow
def test_aws_keys_read_from_the_environment_may_stay_in_the_config_map() -> None:
    result = template_with(
        "config.inline.credentials.static.access_key_id=AKIAIOSFODNN7EXAMPLE",
        "config.inline.credentials.static.secret_access_key=${AWS_SECRET_ACCESS_KEY}",
    )
    objects = tuple(document for document in yaml.safe_load_all(result.stdout) if document)
    config = yaml.safe_load(the_one(objects, "ConfigMap")["data"]["config.yaml"])

    assert result.returncode == 0, result.stderr
    assert config["credentials"]["static"]["secret_access_key"] == "${AWS_SECRET_ACCESS_KEY}"


@pytest.mark.slow
def test_a_service_account_made_elsewhere_is_named_in_the_notes() -> None:
    result = helm(
        "install",
        RELEASE,
        str(CHART),
        "--dry-run=client",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=shared",
    )

    assert result.returncode == 0, result.stderr
    assert "ServiceAccount shared, which the chart does not make" in result.stdout
    assert "kind: ServiceAccount" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("release", "fullname"),
    [
        ("my.rel", "my-rel-cognito-import-exporter"),
        ("cognito-import-exporter.prod", "cognito-import-exporter-prod"),
    ],
)
def test_a_release_name_with_dots_names_valid_objects(release: str, fullname: str) -> None:
    result = helm("template", release, str(CHART), "--set", "storage.type=persistentVolumeClaim")
    objects = tuple(document for document in yaml.safe_load_all(result.stdout) if document)

    assert result.returncode == 0, result.stderr
    assert the_one(objects, "Service")["metadata"]["name"] == fullname
    assert the_one(objects, "Deployment")["metadata"]["labels"]["app.kubernetes.io/instance"] == (
        release
    )
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], True)


# the flags the Deployment sets, by the exporter's argument names
CHART_FLAGS = {"listen_address", "config_file", "web_config_file", "storage_path"}


def extra_argument_errors(argument: str) -> list[str]:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema["properties"]["extraArgs"]["items"])
    return [error.message for error in validator.iter_errors(argument)]


def overridden_flags(argument: str) -> set[str]:
    """The chart's flags an extra argument would override, argparse taking prefixes."""
    parser = build_parser()
    try:
        # argparse prints its refusals and the help
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            given = vars(parser.parse_args([argument]))
    except SystemExit:
        return set()
    defaults = vars(parser.parse_args([]))
    return {name for name in CHART_FLAGS if given[name] != defaults[name]}


def test_extra_args_cannot_override_the_charts_flags_even_abbreviated() -> None:
    options = sorted(set(re.findall(r"--[a-z][-.a-z]+", build_parser().format_help())))
    prefixes = {option[:end] for option in options for end in range(3, len(option) + 1)}
    candidates = sorted(f"{prefix}=/x" for prefix in prefixes)

    overriding = [arg for arg in candidates if overridden_flags(arg)]
    refused = [arg for arg in candidates if extra_argument_errors(arg)]
    others = [option for option in options if not overridden_flags(f"{option}=/x")]

    assert "--web.listen=/x" in overriding
    assert "--s=/x" in overriding
    assert set(overriding) <= set(refused)
    assert others == [
        "--config.check",
        "--demo",
        "--help",
        "--log.format",
        "--log.level",
        "--version",
        "--web.timeout-offset",
    ]
    assert {option: extra_argument_errors(option) for option in others} == {
        option: [] for option in others
    }
    assert extra_argument_errors("--storage.path") != []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "fullname"),
    [
        (["1rel"], "1rel-cognito-import-exporter"),
        (["cie", "--set", "fullnameOverride=9-exporter"], "9-exporter"),
    ],
)
def test_a_name_starting_with_a_digit_is_refused(settings: list[str], fullname: str) -> None:
    result = helm("template", *settings[:1], str(CHART), *settings[1:])

    assert result.returncode == 1
    assert (
        f"the objects' name \"{fullname}\" must start with a letter (a Service's name is a "
        "DNS-1035 label): set fullnameOverride, or a release name starting with a letter"
    ) in result.stderr
