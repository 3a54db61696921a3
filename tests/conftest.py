"""Fixtures many test modules share. A module that needs the simulator over HTTP defines its
own `model` (the pools it wants) and asks for `endpoint`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.demo.service import SimulatedCognito
from tests.simulated import serving


@pytest.fixture
def endpoint(model: SimulatedCognito) -> Iterator[str]:
    """The module's `model`, served over real HTTP on loopback, for real botocore."""
    with serving(model) as url:
        yield url
