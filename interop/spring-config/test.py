"""config-client (a real Spring Cloud Config client, from PyPI) against msakit-config-server.

Usage: python test.py <msakit-config-server binary>. Prints one line per check and a closing
"spring-config interop: N passed, M failed" line; exits non-zero on any failure.
"""
import base64
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from config.spring import ConfigClient

passed, failed = 0, 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def put(base, doc, yaml):
    request = urllib.request.Request(f"{base}/v1/config/{doc}", data=yaml.encode(), method="PUT",
                                     headers={"content-type": "application/yaml"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 200


def main(binary):
    port = free_port()
    key = base64.b64encode(os.urandom(32)).decode()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{port}", "--data-dir", data],
            env={**os.environ, "MSAKIT_CONFIG_ENCRYPT_KEY": key, "RUST_LOG": "warn"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{base}/health")
                    break
                except OSError:
                    time.sleep(0.05)
            put(base, "application/default/main", "shared: from-application\ntimeout: 1s\n")
            put(base, "orders/default/main", "timeout: 2s\ndb:\n  pool: 4\n")
            put(base, "orders/development/main", "db:\n  pool: 8\n")

            client = ConfigClient(address=base, app_name="orders", profile="development", label="master")
            client.get_config()
            check("fetches the app's configuration", client.get("db.pool") == 8, client.config)
            check("the app's value overrides the shared one", client.get("timeout") == "2s", client.get("timeout"))
            check("inherits shared values", client.get("shared") == "from-application")

            put(base, "orders/development/main", "db:\n  pool: 16\n")
            fresh = ConfigClient(address=base, app_name="orders", profile="development", label="main")
            fresh.get_config()
            check("sees a change after a write", fresh.get("db.pool") == 16, fresh.config)

            sealed = client.encrypt("s3cret-value")
            check("encrypt returns ciphertext", sealed and "s3cret-value" not in sealed, sealed)
            check("decrypt round-trips", client.decrypt(sealed) == "s3cret-value")
            put(base, "orders/default/main", f"timeout: 2s\ndb:\n  pool: 4\n  password: '{{cipher}}{sealed}'\n")
            secret = ConfigClient(address=base, app_name="orders", profile="development", label="main")
            secret.get_config()
            check("{cipher} values arrive decrypted", secret.get("db.password") == "s3cret-value", secret.config)
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"spring-config interop: {passed} passed, {failed} failed")
    return failed == 0


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1]) else 1)
