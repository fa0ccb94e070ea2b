"""py-eureka-client (a real Eureka client, from PyPI) against msakit-registry.

Usage: python test.py <msakit-registry binary>. Prints one line per check and a closing
"eureka interop: N passed, M failed" line; exits non-zero on any failure.
"""
import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import py_eureka_client.eureka_basic as eureka
from py_eureka_client.eureka_client import EurekaClient

APP = "GREETER"
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


def greeter(port):
    """A tiny service answering with its own port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"hello from {port}".encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def native(url, path):
    with urllib.request.urlopen(url + path) as response:
        return json.loads(response.read())


async def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


async def main(binary):
    port = free_port()
    registry = subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    server = f"{base}/eureka"
    try:
        for _ in range(200):
            try:
                native(base, "/health")
                break
            except OSError:
                time.sleep(0.05)
        ports = [free_port(), free_port()]
        services = [greeter(p) for p in ports]
        clients = [
            EurekaClient(eureka_server=server, app_name=APP, instance_id=f"greeter-{p}", instance_host="127.0.0.1",
                         instance_ip="127.0.0.1", instance_port=p, renewal_interval_in_secs=1, duration_in_secs=4,
                         should_discover=False, metadata={"version": "1.0"})
            for p in ports
        ]
        for client in clients:
            await client.start()

        registered = native(base, "/v1/services/greeter")
        check("two instances registered, visible through the native API", len(registered["instances"]) == 2, registered)
        check("the lease is the client's durationInSecs, not doubled",
              registered["instances"][0]["lease_ttl_ms"] == 4000, registered["instances"][0]["lease_ttl_ms"])

        apps = await eureka.get_applications(server)
        app = apps.get_application(APP)
        check("full fetch finds both instances", app is not None and len(app.up_instances) == 2)
        check("the apps hash code is Eureka's format", apps.appsHashcode == "UP_2_", apps.appsHashcode)
        delta = await eureka.get_delta(server)
        actions = sorted(i.actionType for a in delta.applications for i in a.instances)
        check("delta fetch reports the additions", actions == ["ADDED", "ADDED"], actions)
        vip = await eureka.get_vip(server, APP.lower())
        check("discovery by VIP", sum(len(a.instances) for a in vip.applications) == 2)
        one = await eureka.get_app_instance(server, APP, f"greeter-{ports[0]}")
        check("one instance by app and id", one.port.port == ports[0] and one.metadata.get("version") == "1.0")

        # A second client discovers the app and calls it.
        caller = EurekaClient(eureka_server=server, should_register=False, should_discover=True,
                              renewal_interval_in_secs=1)
        await caller.start()
        answer = await caller.do_service(APP, "/")
        check("a discovering client calls an instance", answer.startswith("hello from "), answer)

        # Heartbeats keep the 4-second leases alive well past their length.
        await asyncio.sleep(6)
        check("heartbeats keep the instances registered",
              len(native(base, "/v1/services/greeter")["instances"]) == 2)

        # Drain one.
        await clients[0].status_update("OUT_OF_SERVICE")
        drained = native(base, f"/v1/services/greeter/instances/greeter-{ports[0]}")
        check("status update takes an instance out of service", drained["status"] == "OUT_OF_SERVICE", drained["status"])
        app = await eureka.get_application(server, APP)
        check("discovery sees one instance up", len(app.up_instances) == 1)
        ok = await wait_for(lambda: _caller_sees(caller, 1))
        check("the discovering client's delta-updated cache has one instance up", ok)

        # Stop the other: it deregisters.
        await clients[1].stop()
        left = native(base, "/v1/services/greeter")["instances"]
        check("stop deregisters the instance", [i["id"] for i in left] == [f"greeter-{ports[0]}"], left)
        delta = await eureka.get_delta(server)
        deleted = [i.instanceId for a in delta.applications for i in a.instances if i.actionType == "DELETED"]
        check("delta reports the deletion", deleted == [f"greeter-{ports[1]}"], deleted)
        await clients[0].delete_status_override()
        restored = native(base, f"/v1/services/greeter/instances/greeter-{ports[0]}")
        check("deleting the override brings it back", restored["status"] == "UP", restored["status"])
        await clients[0].stop()
        await caller.stop()
        for s in services:
            s.shutdown()
    finally:
        registry.terminate()
        registry.wait(timeout=10)
    print(f"eureka interop: {passed} passed, {failed} failed")
    return failed == 0


async def _caller_sees(caller, up):
    app = caller.applications.get_application(APP)
    return app is not None and len(app.up_instances) == up


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(sys.argv[1])) else 1)
