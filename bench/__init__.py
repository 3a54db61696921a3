"""The scrape benchmark: the exporter against the simulator, beside a sequential baseline."""
