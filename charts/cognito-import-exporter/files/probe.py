# The liveness and readiness probe when the exporter asks for basic auth, which covers
# /-/healthy and /-/ready too. Run in the exporter's container by the kubelet:
#   python3 -I -S -c "$(cat probe.py)" URL CREDENTIALS_DIR
# CREDENTIALS_DIR holds the files `username` and `password`. Exits 0 on a 200 answer.
import base64
import pathlib
import ssl
import sys
import urllib.request

url, credentials = sys.argv[1], pathlib.Path(sys.argv[2])
user = (credentials / "username").read_text(encoding="utf-8")
password = (credentials / "password").read_text(encoding="utf-8")
token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
context = ssl.create_default_context()
# Loopback only: the serving certificate names the Service, not 127.0.0.1.
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
try:
    with urllib.request.urlopen(request, timeout=5, context=context) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError as error:
    print(f"{url}: {error}", file=sys.stderr)
    sys.exit(1)
