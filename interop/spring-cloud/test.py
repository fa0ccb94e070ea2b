"""Spring Cloud's own Java clients against msakit-registry and msakit-config-server.

Usage: python test.py <msakit-registry> <msakit-config-server> <folder with the apps' jars>
       [<Spring Cloud Config Server jar>]

With the last argument, our Spring API is also compared with Spring's own server over the same
documents (its native backend): same media type, same property sources in the same order, the
same values, each with an origin.

Starts both servers and the Spring Boot apps of this folder (inventory twice, orders, edge) as
processes and checks, one line per check, the eight behaviours of interop/spring-cloud/README.md.
Every bound it asserts is the one a Spring user gets from the intervals set here (fetch 1 s,
renewal 1 s, lease 3 s, LoadBalancer cache 1 s); the time each took is printed beside it. Exits
non-zero on any failure, after printing the tail of every app's log.
"""
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

FETCH_S, TTL_S, LEASE_S, RENEW_S = 1, 1, 3, 1
# How long a JVM may take to start on a busy two-core machine: never a bound under test.
START_TIMEOUT_S = 240
V2 = "application/vnd.spring-cloud.config-server.v2+json"

passed, failed = 0, 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name} {detail}", flush=True)
    return condition


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, method="GET", body=None, headers=None, timeout=10):
    """(status, headers, body text) of one HTTP exchange; connection failures are status 0."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, lower_keys(response.headers), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, lower_keys(e.headers), e.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as e:
        return 0, {}, str(e)


def lower_keys(headers):
    return {k.lower(): v for k, v in headers.items()}


def get_json(url, timeout=10):
    status, _, text = request(url, headers={"Accept": "application/json"}, timeout=timeout)
    if status != 200:
        raise RuntimeError(f"GET {url}: {status} {text[:300]}")
    return json.loads(text)


def wait_until(what, predicate, timeout, interval=0.1, since=None):
    """Seconds from `since` (default: now) until the start of the first probe of predicate()
    that was true, so that a slow probe does not count; raises after `timeout` seconds."""
    start = time.monotonic() if since is None else since
    last_error = None
    while time.monotonic() - start < timeout:
        probed = time.monotonic()
        try:
            if predicate():
                return probed - start
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            last_error = e
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout} s (last error: {last_error})")


class Process:
    """A child process whose output goes to a log file, printed when the run fails."""

    def __init__(self, name, argv, logs, env=None):
        self.name = name
        self.log_path = os.path.join(logs, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def tail(self, lines=40):
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])


class Run:
    """Both msakit servers and the Java apps of one test run."""

    def __init__(self, registry_bin, config_bin, jars, workdir):
        self.registry_bin, self.config_bin, self.jars = registry_bin, config_bin, jars
        self.workdir = workdir
        self.logs = os.path.join(workdir, "logs")
        os.makedirs(self.logs)
        self.registry_port, self.config_port = free_port(), free_port()
        self.registry = f"http://127.0.0.1:{self.registry_port}"
        self.config = f"http://127.0.0.1:{self.config_port}"
        self.processes = []
        self.apps = {}
        self.key = base64.b64encode(os.urandom(32)).decode()
        self.registry_generation = 0

    def start_registry(self):
        self.registry_generation += 1
        data = os.path.join(self.workdir, f"registry-data-{self.registry_generation}")
        settings = os.path.join(self.workdir, "registry.yaml")
        with open(settings, "w") as f:
            # Eureka's own test advice: self-preservation off where instances come and go; leases
            # swept every 100 ms (the default is 250), so an eviction shows within its lease.
            f.write("self_preservation:\n  enabled: false\nsweep_interval: 100ms\n")
        process = Process(f"registry-{self.registry_generation}",
                          [self.registry_bin, "--listen", f"127.0.0.1:{self.registry_port}",
                           "--data-dir", data, "--config", settings],
                          self.logs, env={"RUST_LOG": "info"})
        self.processes.append(process)
        wait_until("the registry answers", lambda: request(f"{self.registry}/health")[0] == 200, 30)
        return process

    def start_config_server(self):
        data = os.path.join(self.workdir, "config-data")
        process = Process("config-server",
                          [self.config_bin, "--listen", f"127.0.0.1:{self.config_port}",
                           "--data-dir", data],
                          self.logs, env={"RUST_LOG": "info", "MSAKIT_CONFIG_ENCRYPT_KEY": self.key})
        self.processes.append(process)
        wait_until("the config server answers", lambda: request(f"{self.config}/health")[0] == 200, 30)
        return process

    def start_app(self, jar, name, zone, extra=(), config_import=True):
        """Starts one Spring Boot app; its instance id is `name`. Returns (process, base URL)."""
        port = free_port()
        argv = [
            "java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xss512k", "-Xmx256m",
            "-jar", os.path.join(self.jars, f"{jar}.jar"),
            f"--server.port={port}",
            f"--eureka.client.service-url.defaultZone={self.registry}/eureka/",
            f"--eureka.instance.instance-id={name}",
            "--eureka.instance.ip-address=127.0.0.1",
            f"--eureka.instance.metadata-map.zone={zone}",
            "--eureka.instance.metadata-map.team=interop",
            *([f"--spring.config.import=configserver:{self.config}"] if config_import else []),
            *extra,
        ]
        process = Process(name, argv, self.logs)
        self.processes.append(process)
        base = f"http://127.0.0.1:{port}"
        self.apps[name] = (process, base, port)
        return process, base

    def wait_healthy(self, name):
        process, base, _ = self.apps[name]

        def up():
            if process.proc.poll() is not None:
                raise SystemExit(f"{name} exited with {process.proc.returncode}:\n{process.tail()}")
            status, _, text = request(f"{base}/actuator/health", timeout=3)
            return status == 200 and '"UP"' in text
        return wait_until(f"{name} is healthy", up, START_TIMEOUT_S, interval=0.5)

    def stop_all(self):
        for process in reversed(self.processes):
            process.stop(timeout=15)

    def put_config(self, doc, yaml):
        status, _, text = request(f"{self.config}/v1/config/{doc}", "PUT", yaml,
                                  {"content-type": "application/yaml"})
        if status != 200:
            raise RuntimeError(f"PUT {doc}: {status} {text}")

    def native_instances(self, service):
        status, _, text = request(f"{self.registry}/v1/services/{service}")
        if status == 404:
            return {}
        if status != 200:
            raise RuntimeError(f"GET /v1/services/{service}: {status} {text}")
        return {i["id"]: i for i in json.loads(text)["instances"]}

    def eureka_paths(self):
        """How many full and delta fetches the registry has answered, read from /metrics."""
        status, _, text = request(f"{self.registry}/metrics")
        counts = {"full": 0, "delta": 0}
        for line in text.splitlines():
            if not line.startswith("registry_http_request_duration_seconds_count{"):
                continue
            if 'method="GET"' not in line or 'status="200"' not in line:
                continue
            value = float(line.rsplit(" ", 1)[1])
            if 'route="/eureka/apps/delta"' in line:
                counts["delta"] += value
            elif 'route="/eureka/apps/"' in line or 'route="/eureka/apps"' in line:
                counts["full"] += value
        return counts


def instance_ids_reached(url, calls):
    """The `instance` fields of `calls` answers from `url` (failed calls count as None)."""
    seen = []
    for _ in range(calls):
        status, _, text = request(url, timeout=10)
        seen.append(json.loads(text).get("instance") if status == 200 else None)
    return seen


def discovered(base, service):
    return {i["instanceId"]: i for i in get_json(f"{base}/discovery").get(service, [])}


def main(registry_bin, config_bin, jars, spring_config_jar=None):
    with tempfile.TemporaryDirectory() as workdir:
        run = Run(registry_bin, config_bin, jars, workdir)
        try:
            scenario(run)
            if spring_config_jar:
                check_against_spring(run, spring_config_jar)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - any failure ends the run with logs
            check("the run completed", False, repr(e))
        finally:
            run.stop_all()
            if failed:
                for process in run.processes:
                    print(f"---- {process.name} (last lines of {process.log_path})")
                    print(process.tail())
    print(f"spring-cloud interop: {passed} passed, {failed} failed")
    return 1 if failed else 0


def scenario(run):
    run.start_registry()
    run.start_config_server()
    seed_config(run)

    # 8a. A non-optional configserver: import with the server down fails fast; optional starts.
    dead = f"http://127.0.0.1:{free_port()}"
    fail_fast, _ = run.start_app("inventory", "inventory-nocfg", "zone-a",
                                 [f"--spring.config.import=configserver:{dead}"], config_import=False)

    for name, zone in (("inventory-1", "zone-a"), ("inventory-2", "zone-b")):
        run.start_app("inventory", name, zone)
    run.start_app("orders", "orders-1", "zone-a")
    run.start_app("edge", "edge-1", "zone-a", config_import=False)

    try:
        code = fail_fast.proc.wait(START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        code = None
    log = fail_fast.tail(200)
    check("8. configserver: with the server down fails the start",
          code not in (None, 0) and ("Could not locate PropertySource" in log
                                     or "ConfigClientFailFastException" in log),
          f"exit {code}: {log[-1500:]}")

    for name in ("inventory-1", "inventory-2", "orders-1", "edge-1"):
        took = run.wait_healthy(name)
        print(f"     {name} healthy after {took:.1f} s", flush=True)
    check_registration(run)
    check_calls(run)
    check_config(run)

    # Everything after this point must go by deltas alone (6).
    wait_until("every Java client fetches deltas", lambda: deltas_flowing(run), 30)
    before = run.eureka_paths()
    check_out_of_service(run)
    check_optional_config_and_cancel(run, dead)
    check_kill(run)
    check_edge_without_orders(run)
    after = run.eureka_paths()
    check("6. the Java clients fetched deltas throughout",
          after["delta"] > before["delta"] + 20, f"{before} -> {after}")
    check("6. and never a full registry after warm-up (apps__hashcode agreed every time)",
          after["full"] == before["full"], f"{before} -> {after}")

    check_registry_restart(run)


def deltas_flowing(run):
    first = run.eureka_paths()
    time.sleep(FETCH_S * 2.5)
    second = run.eureka_paths()
    return second["delta"] >= first["delta"] + 3 and second["full"] == first["full"]


def seed_config(run):
    status, _, sealed = request(f"{run.config}/encrypt", "POST", "s3cret-from-msakit",
                                {"content-type": "text/plain"})
    if status != 200:
        raise RuntimeError(f"POST /encrypt: {status} {sealed}")
    run.sealed = sealed
    run.put_config("application/default/release",
                   "shared:\n  region: eu-west\ninventory:\n  greeting: from-application\n"
                   "  owner: from-application\n")
    run.put_config("inventory/default/release",
                   "inventory:\n  greeting: from-app\n  owner: from-app\n"
                   f"  secret: '{{cipher}}{sealed}'\n")
    run.put_config("inventory/development/release", "inventory:\n  greeting: from-profile\n")
    # Another label, which the apps must not see.
    run.put_config("inventory/development/main", "inventory:\n  greeting: from-the-wrong-label\n")


def check_registration(run):
    # 1. Registered through the Eureka API, visible through the native API.
    expected = {name: port for name, (_, _, port) in run.apps.items() if name != "inventory-nocfg"}

    def all_native():
        seen = {}
        for service in ("inventory", "orders", "edge"):
            seen.update(run.native_instances(service))
        return all(n in seen and seen[n]["status"] == "UP" for n in expected)
    wait_until("every app registered", all_native, 20)
    for name, port in expected.items():
        service = name.split("-")[0]
        native = run.native_instances(service)[name]
        zone = "zone-b" if name == "inventory-2" else "zone-a"
        check(f"1. {name} registered with address, port, metadata and zone",
              native["host"] == "127.0.0.1" and native["port"] == port
              and native["metadata"].get("team") == "interop" and native.get("zone") == zone,
              native)
    # The Eureka view gives the same instance back as Java sent it.
    eureka = get_json(f"{run.registry}/eureka/apps/INVENTORY")["application"]["instance"]
    by_id = {i["instanceId"]: i for i in eureka}
    one = by_id.get("inventory-1", {})
    check("1. the Eureka API gives the instance back (ip, port, vip, metadata)",
          one.get("ipAddr") == "127.0.0.1" and one.get("port", {}).get("$") == run.apps["inventory-1"][2]
          and one.get("vipAddress") == "inventory" and one.get("metadata", {}).get("zone") == "zone-a",
          one)

    # DiscoveryClient.getServices() / getInstances() agree, in every app.
    for app in ("inventory-1", "orders-1", "edge-1"):
        base = run.apps[app][1]

        def agrees():
            services = get_json(f"{base}/discovery")
            return all(set(services.get(s, [{}])[0].keys()) and
                       {i["instanceId"] for i in services.get(s, [])} ==
                       {n for n in expected if n.startswith(s)}
                       for s in ("inventory", "orders", "edge"))
        wait_until(f"{app}'s DiscoveryClient sees every app", agrees, 20)
        seen = discovered(base, "inventory")
        check(f"1. {app}: DiscoveryClient agrees (services, instances, host, port, metadata)",
              seen.get("inventory-2", {}).get("port") == run.apps["inventory-2"][2]
              and seen["inventory-2"]["host"] == "127.0.0.1"
              and seen["inventory-2"]["metadata"].get("zone") == "zone-b", seen)


def check_calls(run):
    orders = run.apps["orders-1"][1]
    edge = run.apps["edge-1"][1]
    # 2. By name, through RestClient and Feign, reaching both instances.
    for way in ("via-rest", "via-feign"):
        reached = instance_ids_reached(f"{orders}/orders/{way}", 12)
        check(f"2. orders reaches both inventory instances by name ({way})",
              set(reached) == {"inventory-1", "inventory-2"}, reached)
    reached = instance_ids_reached(f"{edge}/orders/via-rest", 8)
    check("2. edge routes /orders/** to lb://orders", set(reached) <= {"inventory-1", "inventory-2"}
          and None not in reached, reached)
    status, _, text = request(f"{edge}/orders/whoami")
    check("2. edge answers with the orders instance", status == 200 and "orders-1" in text, text)


def items(run, app):
    return get_json(f"{run.apps[app][1]}/items")


def check_config(run):
    # 3. Values through spring.config.import=configserver:, precedence, label, {cipher}.
    seen = items(run, "inventory-1")
    check("3. the profile's value wins over the app's and the shared one",
          seen["greeting"] == "from-profile", seen)
    check("3. the app's value wins over the shared application's", seen["owner"] == "from-app", seen)
    check("3. the shared application's value is inherited", seen["region"] == "eu-west", seen)
    check("3. {cipher} values arrive decrypted", seen["secret"] == "s3cret-from-msakit", seen)

    run.put_config("inventory/development/release", "inventory:\n  greeting: changed-in-msakit\n")
    status, _, text = request(f"{run.apps['inventory-1'][1]}/actuator/refresh", "POST", "",
                              {"content-type": "application/json"})
    check("3. POST /actuator/refresh reports the changed key",
          status == 200 and "inventory.greeting" in text, f"{status} {text}")
    seen = items(run, "inventory-1")
    check("3. after a write and a refresh the app serves the new value (@RefreshScope)",
          seen["greeting"] == "changed-in-msakit", seen)
    other = items(run, "inventory-2")
    check("3. an app not refreshed keeps its value", other["greeting"] == "from-profile", other)

    # The v2 media type, answered as Spring's server answers it.
    status, headers, text = request(f"{run.config}/inventory/development/release",
                                    headers={"Accept": V2})
    body = json.loads(text) if status == 200 else {}
    sources = body.get("propertySources", [])
    first = sources[0]["source"] if sources else {}
    check("3. the v2 media type is answered in it",
          status == 200 and headers.get("content-type", "").startswith(V2), (status, headers))
    check("3. v2 values carry their origin ({\"value\": ..., \"origin\": ...})",
          isinstance(first.get("inventory.greeting"), dict)
          and first["inventory.greeting"].get("value") == "changed-in-msakit", first)
    check("3. v2 keeps the label and the property sources' order",
          body.get("label") == "release" and body.get("name") == "inventory"
          and [s["name"] for s in sources][:1] and "development" in sources[0]["name"], body)


# The same documents for both servers: Spring's native backend reads them as files, ours as
# documents under the default label. Values of every YAML kind, nesting, a list and a null.
REFERENCE_DOCUMENTS = {
    ("application", None): "shared:\n  region: eu-west\ncatalog:\n  owner: from-application\n",
    ("catalog", None): "catalog:\n  owner: from-app\n  size: 4\n  enabled: true\n"
                       "  tags: [a, b]\n  ratio: 0.5\n  nothing: ~\n",
    ("catalog", "development"): "catalog:\n  size: 8\n",
    ("application", "development"): "catalog:\n  owner: from-application-development\n",
}


def check_against_spring(run, jar):
    """Our v2 Environment against Spring Cloud Config Server's own, over the same documents."""
    repo = os.path.join(run.workdir, "spring-native-repo")
    os.makedirs(repo)
    for (app, profile), yaml in REFERENCE_DOCUMENTS.items():
        name = app if profile is None else f"{app}-{profile}"
        with open(os.path.join(repo, f"{name}.yml"), "w") as f:
            f.write(yaml)
        run.put_config(f"{app}/{profile or 'default'}/main", yaml)
    port = free_port()
    spring = Process("spring-config-server",
                     ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m", "-jar", jar,
                      f"--server.port={port}",
                      f"--spring.cloud.config.server.native.search-locations=file:{repo}/"],
                     run.logs)
    run.processes.append(spring)
    base = f"http://127.0.0.1:{port}"
    wait_until("Spring's config server answers",
               lambda: request(f"{base}/application/default")[0] == 200, START_TIMEOUT_S, 0.5)
    theirs = request(f"{base}/catalog/development", headers={"Accept": V2})
    ours = request(f"{run.config}/catalog/development", headers={"Accept": V2})
    check("3. v2 against Spring's own server: both answer 200 in the v2 media type",
          theirs[0] == ours[0] == 200
          and theirs[1].get("content-type", "").split(";")[0] == ours[1].get("content-type"), (theirs[:2], ours[:2]))

    def sources(text):
        body = json.loads(text)
        return [{k: v["value"] for k, v in s["source"].items()} for s in body["propertySources"]]

    def origins(text):
        body = json.loads(text)
        return all(isinstance(v, dict) and set(v) == {"value", "origin"} and isinstance(v["origin"], str)
                   for s in body["propertySources"] for v in s["source"].values())
    check("3. v2 against Spring's own server: the same sources in the same order, the same values",
          sources(theirs[2]) == sources(ours[2]), f"\n  Spring: {sources(theirs[2])}\n  ours:   {sources(ours[2])}")
    check("3. v2 against Spring's own server: every value with its origin", origins(ours[2]), ours[2])


def check_out_of_service(run):
    # 4. OUT_OF_SERVICE through our native API: Java callers stop reaching it.
    orders = run.apps["orders-1"][1]
    bound = FETCH_S + TTL_S + 1
    status, _, text = request(f"{run.registry}/v1/services/inventory/instances/inventory-2/status",
                              "PUT", json.dumps({"status": "OUT_OF_SERVICE"}),
                              {"content-type": "application/json"})
    check("4. the native API takes inventory-2 out of service", status == 200, f"{status} {text}")
    after = wait_until("callers stop reaching inventory-2", lambda: "inventory-2" not in
                       instance_ids_reached(f"{orders}/orders/via-rest", 6), 30)
    reached = instance_ids_reached(f"{orders}/orders/via-rest", 10) + \
        instance_ids_reached(f"{orders}/orders/via-feign", 10)
    check(f"4. out of service: Java callers stopped reaching it within {bound} s (took {after:.1f} s)",
          after <= bound and "inventory-2" not in reached, reached)

    status, _, text = request(f"{run.registry}/v1/services/inventory/instances/inventory-2/status",
                              "PUT", json.dumps({"status": None}),
                              {"content-type": "application/json"})
    check("4. the native API puts it back in service", status == 200, f"{status} {text}")
    after = wait_until("callers reach inventory-2 again", lambda: "inventory-2" in
                       instance_ids_reached(f"{orders}/orders/via-rest", 6), 30)
    check(f"4. back in service, it is called again within {bound} s (took {after:.1f} s)",
          after <= bound)


def check_optional_config_and_cancel(run, dead):
    # 8b. optional:configserver: starts without the server (and registers: a new instance);
    # its graceful stop cancels the lease (a DELETED in the delta). It fetches no registry
    # itself, so every full fetch counted in (6) is one the other clients fell back to.
    process, base = run.start_app("inventory", "inventory-3", "zone-a",
                                  [f"--spring.config.import=optional:configserver:{dead}",
                                   "--eureka.client.fetch-registry=false"],
                                  config_import=False)
    took = run.wait_healthy("inventory-3")
    seen = items(run, "inventory-3")
    check(f"8. optional:configserver: with the server down starts (in {took:.1f} s) on defaults",
          seen["greeting"] == "unset", seen)
    orders = run.apps["orders-1"][1]
    wait_until("callers reach inventory-3", lambda: "inventory-3" in
               instance_ids_reached(f"{orders}/orders/via-rest", 9), 30)
    process.stop()
    stopped = time.monotonic()
    check("6. a graceful stop cancels the lease", "inventory-3" not in run.native_instances("inventory"))
    wait_until("orders forgets inventory-3", lambda: "inventory-3" not in discovered(orders, "inventory"),
               30)
    print(f"     the cancel reached orders' cache {time.monotonic() - stopped:.1f} s after the stop",
          flush=True)


def check_kill(run):
    # 5. kill -9: evicted within the lease, gone from every Java cache soon after.
    process = run.apps["inventory-2"][0]
    process.stop(signal.SIGKILL)
    killed = time.monotonic()
    evicted = wait_until("inventory-2 is evicted", lambda: "inventory-2" not in
                         run.native_instances("inventory"), 30, interval=0.05)
    # The lease runs from the last renewal, before the kill; the sweep runs every 100 ms, and
    # half a second more allows for a late sweep on a busy machine.
    check(f"5. kill -9: evicted within its lease of {LEASE_S} s (took {evicted:.1f} s)",
          evicted <= LEASE_S + 0.5)
    bound = LEASE_S + FETCH_S + TTL_S + 1
    gone = 0.0
    for app in ("orders-1", "edge-1", "inventory-1"):
        base = run.apps[app][1]
        gone = max(gone, wait_until(f"{app} forgets inventory-2", lambda: "inventory-2" not in
                          discovered(base, "inventory"), 30, since=killed))
    orders = run.apps["orders-1"][1]
    reached = instance_ids_reached(f"{orders}/orders/via-rest", 6) + \
        instance_ids_reached(f"{orders}/orders/via-feign", 6)
    check(f"5. gone from every Java client within {bound} s (the last after {gone:.1f} s)",
          gone <= bound and set(reached) == {"inventory-1"}, reached)


def check_edge_without_orders(run):
    edge = run.apps["edge-1"][1]
    run.apps["orders-1"][0].stop()

    def unavailable():
        return request(f"{edge}/orders/whoami")[0] == 503
    took = wait_until("edge answers 503", unavailable, 30)
    check(f"2. with every orders instance gone, edge answers 503 (after {took:.1f} s)",
          took <= FETCH_S + TTL_S + 1)


def check_registry_restart(run):
    # 7. The registry restarted with no data: every app registers again.
    old = run.processes[0]
    old.stop(signal.SIGKILL)
    run.start_registry()
    wanted = {"inventory": ["inventory-1"], "edge": ["edge-1"]}
    took = wait_until("every app registered again", lambda: all(
        set(ids) <= set(run.native_instances(s)) for s, ids in wanted.items()), 30, interval=0.05)
    check(f"7. registry restarted empty: every app registered again within {RENEW_S + 2} s "
          f"(took {took:.1f} s)", took <= RENEW_S + 2)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
