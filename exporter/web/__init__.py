"""The HTTP side: the ASGI front (web config, auth), the routes, the status page, TLS, and
serving on hypercorn."""
