"""The listen address as Go reads it: all interfaces are IPv4 and IPv6 alike."""

from __future__ import annotations

import socket

import pytest

from exporter.web.serve import listen


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="this host has no IPv6")
@pytest.mark.parametrize("address", [":0", "0.0.0.0:0", "[::]:0"])
def test_all_interfaces_take_ipv4_and_ipv6_clients(address: str) -> None:
    with listen(address) as server:
        port = server.getsockname()[1]
        assert (reachable("127.0.0.1", port), reachable("::1", port)) == (True, True)


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="this host has no IPv6")
def test_one_address_is_that_address_alone() -> None:
    with listen("127.0.0.1:0") as server:
        port = server.getsockname()[1]
        assert (reachable("127.0.0.1", port), reachable("::1", port)) == (True, False)
