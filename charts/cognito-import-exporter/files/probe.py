# The liveness and readiness probe when the exporter asks for basic auth, which covers
# /-/healthy and /-/ready too. Run in the exporter's container by the kubelet:
#   python3 -I -S -c "$(cat probe.py)" URL CREDENTIALS_DIR
# CREDENTIALS_DIR holds the files `username` and `password`. Exits 0 on a 200 answer.
import base64
import http.client
import pathlib
import ssl
import sys
import urllib.parse

url, credentials = urllib.parse.urlsplit(sys.argv[1]), pathlib.Path(sys.argv[2])
user = (credentials / "username").read_text(encoding="utf-8")
password = (credentials / "password").read_text(encoding="utf-8")
token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
if url.scheme == "https":
    context = ssl.create_default_context()
    # Loopback only: the serving certificate names the Service, not 127.0.0.1.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection: http.client.HTTPConnection = http.client.HTTPSConnection(
        url.netloc, timeout=5, context=context
    )
else:
    connection = http.client.HTTPConnection(url.netloc, timeout=5)
try:
    connection.request("GET", url.path, headers={"Authorization": f"Basic {token}"})
    status = connection.getresponse().status
except OSError as error:
    print(f"{sys.argv[1]}: {error}", file=sys.stderr)
    sys.exit(1)
finally:
    connection.close()
if status != 200:
    print(f"{sys.argv[1]}: HTTP {status}", file=sys.stderr)
sys.exit(0 if status == 200 else 1)
