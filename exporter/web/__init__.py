"""The HTTP side: the front (web config, auth, deadlines), the routes, the status page, TLS,
and serving: connections, HTTP/1.1 on h11 and HTTP/2 on h2."""
