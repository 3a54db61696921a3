"""The served TLS certificate's expiry as a metric, so an alert can fire before it lapses."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.collect.metrics import TLS_CERTIFICATE_NOT_AFTER


class CertificateExpiryCollector(Collector):
    """`not_after()` at each collection: the expiry of the certificate served now (the
    files are checked first, so a renewal shows even before a client connects); no sample
    when the exporter serves plain HTTP."""

    def __init__(self, not_after: Callable[[], float | None]) -> None:
        self._not_after = not_after

    def collect(self) -> Iterable[Metric]:
        value = self._not_after()
        if value is None:
            return []
        family = TLS_CERTIFICATE_NOT_AFTER.family()
        family.add_sample(family.name, {}, value)
        return [family]

    def describe(self) -> Iterable[Metric]:
        return [TLS_CERTIFICATE_NOT_AFTER.family()]
