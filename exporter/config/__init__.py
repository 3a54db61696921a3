"""The configuration tier: the strict schema, one bounded reader for every file people write,
and one error type whose problems name their paths. Imports nothing of the exporter above it."""
