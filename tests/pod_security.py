"""The checks of Kubernetes' restricted Pod Security Standard, over a rendered pod spec.

The same rules the `restricted` level of Pod Security Admission enforces (its baseline checks
included), as the Pod Security Standards page lists them: each broken rule is one line naming
the field, so a test can say exactly what a chart got wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Json = dict[str, Any]

# Volume types the restricted level allows.
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})
ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
VOLUME_SOURCE_KEYS = frozenset({"name"})


def containers(pod_spec: Json) -> Iterator[tuple[str, Json]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(pod_spec.get(field) or []):
            yield f"spec.{field}[{index}]", container


def restricted_violations(pod_spec: Json) -> list[str]:
    """Every rule of the restricted profile that `pod_spec` breaks; empty when it passes."""
    problems: list[str] = []
    pod_context: Json = pod_spec.get("securityContext") or {}

    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            problems.append(f"spec.{field}: must be false")
    for index, volume in enumerate(pod_spec.get("volumes") or []):
        kinds = set(volume) - VOLUME_SOURCE_KEYS
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"spec.volumes[{index}]: {', '.join(sorted(kinds))} is not allowed")
    for sysctl in pod_context.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"spec.securityContext.sysctls: {sysctl.get('name')} is not safe")
    problems += _context_problems("spec.securityContext", pod_context)

    pod_non_root = pod_context.get("runAsNonRoot") is True
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_ALLOWED:
        problems.append(f"spec.securityContext.seccompProfile.type: {pod_seccomp} is not allowed")
    if pod_context.get("runAsUser") == 0:
        problems.append("spec.securityContext.runAsUser: must not be 0")

    for path, container in containers(pod_spec):
        context: Json = container.get("securityContext") or {}
        problems += _context_problems(f"{path}.securityContext", context)
        if context.get("privileged"):
            problems.append(f"{path}.securityContext.privileged: must be false")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{path}.securityContext.allowPrivilegeEscalation: must be false")
        non_root = context.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            problems.append(f"{path}.securityContext.runAsNonRoot: must be true")
        if context.get("runAsUser") == 0:
            problems.append(f"{path}.securityContext.runAsUser: must not be 0")
        seccomp = (context.get("seccompProfile") or {}).get("type")
        if seccomp is None and pod_seccomp is None:
            problems.append(f"{path}.securityContext.seccompProfile: must be set (or the pod's)")
        elif seccomp is not None and seccomp not in SECCOMP_ALLOWED:
            problems.append(f"{path}.securityContext.seccompProfile.type: {seccomp} is not allowed")
        capabilities: Json = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{path}.securityContext.capabilities.drop: must include ALL")
        added = set(capabilities.get("add") or []) - ADDABLE_CAPABILITIES
        if added:
            names = ", ".join(sorted(added))
            problems.append(f"{path}.securityContext.capabilities.add: {names} is not allowed")
        if context.get("procMount", "Default") != "Default":
            problems.append(f"{path}.securityContext.procMount: must be Default")
        for index, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                problems.append(f"{path}.ports[{index}].hostPort: must be unset or 0")
    return problems


def _context_problems(path: str, context: Json) -> list[str]:
    """The rules a pod's and a container's securityContext share."""
    problems: list[str] = []
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        problems.append(f"{path}.windowsOptions.hostProcess: must be false")
    selinux: Json = context.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES:
        problems.append(f"{path}.seLinuxOptions.type: {selinux['type']} is not allowed")
    for field in ("user", "role"):
        if selinux.get(field):
            problems.append(f"{path}.seLinuxOptions.{field}: must be unset")
    apparmor = (context.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in APPARMOR_TYPES:
        problems.append(f"{path}.appArmorProfile.type: {apparmor} is not allowed")
    return problems
