#!/usr/bin/env python3
"""Load comparison: the same tiny upstream answer behind nginx, nginx+auth_request, Caddy
forward_auth and authgate, all on loopback, measured with the same wrk settings, interleaved.

Rows:
 1 upstream directly (ceiling)            P pingora alone: no filters (authgate's floor)
 2 nginx reverse proxy (no auth)          5 authgate, public path (no token check)
 3 nginx + auth_request -> nginx map      6 authgate, valid token (cache hit)
 4 Caddy + forward_auth -> same validator 7 authgate answering validatetoken
Then: p99 of row 6 with and without a concurrent login flood (argon2 verifications).
Medians over ROUNDS rounds; ratios are within one run. Nothing leaves 127.0.0.1.

Environment: DURATION, CONNS, ROUNDS, WRK_THREADS (wrk); GATE_THREADS (authgate and row P);
ROWS=3,P,6 (a subset, while iterating); NO_FLOOD=1 / FLOOD_ONLY=1 (skip or run only the flood
scenario); EXTRA_CONFIG (YAML lines appended to authgate's config, for A/B of a setting).
"""
import os, re, shutil, signal, statistics, subprocess, sys, tempfile, time, urllib.request, base64, socket

DURATION = int(os.environ.get("DURATION", "10"))
CONNS = int(os.environ.get("CONNS", "50"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
THREADS = int(os.environ.get("WRK_THREADS", "2"))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release", "authgate")
BARE = os.path.join(ROOT, "target", "release", "examples", "bare_pingora")
GATE_THREADS = int(os.environ.get("GATE_THREADS", "2"))  # authgate's default; pingora alone gets the same
P_UP, P_NGX, P_NGX_AUTH, P_CADDY, P_VALID, P_BARE, P_GATE, P_ADMIN = 18080, 18081, 18082, 18083, 18084, 18085, 18090, 18091
APP = "bench"

work = tempfile.mkdtemp(prefix="authgate-load-")
procs = []


def start(cmd, **kw):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **kw)
    procs.append(p)
    return p


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"port {port} never opened")


def cleanup():
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    shutil.rmtree(work, ignore_errors=True)


def write(name, text):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def login():
    body = f"user={base64.b64encode(b'admin').decode()}&password={base64.b64encode(b'admin-demo').decode()}&gwos-app-name={APP}"
    req = urllib.request.Request(f"http://127.0.0.1:{P_GATE}/api/auth/login", data=body.encode(), method="POST")
    return urllib.request.urlopen(req).read().decode()


def to_ms(value):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def cpu_seconds(group):
    """User and system CPU of every process in a process group (a started server and its
    workers), from /proc."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group:  # pgrp; utime and stime follow at 11 and 12
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk(url, headers=(), script=None, conns=CONNS, duration=DURATION, server=None):
    """req/s, p50 and p99 in ms, and the CPU µs per request of `server` (a started process's
    group: the proxy alone, not the upstream), or NaN."""
    cmd = ["wrk", f"-t{THREADS}", f"-c{conns}", f"-d{duration}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    before = cpu_seconds(server.pid) if server else 0.0
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(server.pid) - before if server else float("nan")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"{url}: {errors.group(1)} non-2xx answers: the setup is wrong\n{out}")
    return rps, p50, p99, cpu * 1e6 / total


def main():
    # authgate: demo users, the bench upstream, a public prefix; access logs off like the others.
    config = write("authgate.yaml", f"""
listen: 127.0.0.1:{P_GATE}
admin: {{listen: 127.0.0.1:{P_ADMIN}}}
demo_upstream: null
upstreams: {{up: {{addresses: ["127.0.0.1:{P_UP}"]}}}}
default_upstream: up
public_paths: [/public]
store: {{data_dir: {work}/data}}
log: {{level: warn}}
threads: {GATE_THREADS}
{os.environ.get("EXTRA_CONFIG", "")}
""")
    nginx_conf = lambda token: write("nginx.conf", f"""
worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream up {{ server 127.0.0.1:{P_UP}; keepalive 128; }}
  upstream validator {{ server 127.0.0.1:{P_VALID}; keepalive 128; }}
  map $http_gwos_api_token $token_ok {{ "{token}" 1; default 0; }}
  server {{ listen 127.0.0.1:{P_UP}; location / {{ return 200 "ok\\n"; }} }}
  server {{ listen 127.0.0.1:{P_VALID}; location / {{ if ($token_ok = 0) {{ return 401; }} return 200; }} }}
  server {{
    listen 127.0.0.1:{P_NGX};
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
  server {{
    listen 127.0.0.1:{P_NGX_AUTH};
    location / {{ auth_request /_auth; proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    location = /_auth {{
      internal; proxy_pass http://validator; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass_request_body off; proxy_set_header Content-Length "";
    }}
  }}
}}
""")
    caddyfile = write("Caddyfile", f"""
{{
  admin off
  auto_https off
}}
http://127.0.0.1:{P_CADDY} {{
  forward_auth 127.0.0.1:{P_VALID} {{
    uri /
  }}
  reverse_proxy 127.0.0.1:{P_UP}
}}
""")
    # nginx first with a placeholder map (the upstream must be up for authgate's health check).
    start(["nginx", "-c", nginx_conf("placeholder"), "-g", "daemon off;"])
    wait_port(P_UP)
    gate = start([BIN, "run", "--config", config], cwd=work)
    bare = start([BARE, f"127.0.0.1:{P_BARE}", f"127.0.0.1:{P_UP}", str(GATE_THREADS)])
    wait_port(P_GATE)
    wait_port(P_BARE)
    token = login()
    subprocess.run(["nginx", "-c", nginx_conf(token), "-s", "reload"], check=True)
    time.sleep(0.5)
    start(["caddy", "run", "--config", caddyfile, "--adapter", "caddyfile"], env={**os.environ, "HOME": work})
    wait_port(P_CADDY)
    creds = [f"GWOS-API-TOKEN: {token}", f"GWOS-APP-NAME: {APP}"]
    validate = write("validate.lua", f"""
wrk.method = "POST"
wrk.body = "gwos-api-token={token}&gwos-app-name={APP}"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
""")
    flood = write("login.lua", f"""
wrk.method = "POST"
wrk.body = "user=YWRtaW4=&password=YWRtaW4tZGVtbw==&gwos-app-name={APP}"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
""")
    rows = [
        ("1 upstream directly", lambda: wrk(f"http://127.0.0.1:{P_UP}/api/x", creds)),
        ("2 nginx proxy, no auth", lambda: wrk(f"http://127.0.0.1:{P_NGX}/api/x", creds)),
        ("3 nginx + auth_request", lambda: wrk(f"http://127.0.0.1:{P_NGX_AUTH}/api/x", creds)),
        ("4 Caddy + forward_auth", lambda: wrk(f"http://127.0.0.1:{P_CADDY}/api/x", creds)),
        ("P pingora alone, no filters", lambda: wrk(f"http://127.0.0.1:{P_BARE}/api/x", creds, server=bare)),
        ("5 authgate, public path", lambda: wrk(f"http://127.0.0.1:{P_GATE}/public/x", creds, server=gate)),
        ("6 authgate, valid token", lambda: wrk(f"http://127.0.0.1:{P_GATE}/api/x", creds, server=gate)),
        ("7 authgate validatetoken", lambda: wrk(f"http://127.0.0.1:{P_GATE}/api/auth/validatetoken", script=validate, server=gate)),
    ]
    if os.environ.get("FLOOD_ONLY"):
        rows = []
    if os.environ.get("ROWS"):  # e.g. ROWS=3,6 while iterating; the table needs rows 2 to 5
        wanted = os.environ["ROWS"].split(",")
        rows = [(name, run) for name, run in rows if name.split()[0] in wanted]
    results = {name: [] for name, _ in rows}
    for r in range(ROUNDS):
        for name, run in rows:
            results[name].append(run())
        print(f"round {r + 1}/{ROUNDS} done", file=sys.stderr)
    med = {name: tuple(statistics.median(x[i] for x in runs) for i in range(4)) for name, runs in results.items()}
    if all(name in med for name in TABLE_NEEDS):
        print_table(med)
    else:
        for name, (rps, p50, p99, cpu) in med.items():
            print(f"{name:<28} {rps:>9.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms  CPU {cpu:.1f} µs/request")
    if not os.environ.get("NO_FLOOD"):
        flood_scenario(creds, flood)


TABLE_NEEDS = ("2 nginx proxy, no auth", "3 nginx + auth_request", "4 Caddy + forward_auth",
               "5 authgate, public path", "6 authgate, valid token")


def print_table(med):
    nginx_rps = med["2 nginx proxy, no auth"][0]
    auth_rps = med["3 nginx + auth_request"][0]
    print(f"\n{os.cpu_count()} cores; wrk -t{THREADS} -c{CONNS} -d{DURATION}s; median of {ROUNDS} interleaved rounds; "
          f"authgate and pingora alone on {GATE_THREADS} thread(s)\n")
    print(f"| {'row':<28} | {'req/s':>9} | {'p50 ms':>7} | {'p99 ms':>7} | {'/row 2':>6} | {'/row 3':>6} | {'CPU µs/req':>10} |")
    print(f"|{'-' * 30}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 8}|{'-' * 12}|")
    for name, (rps, p50, p99, cpu) in med.items():
        cpu_text = "" if cpu != cpu else f"{cpu:.1f}"
        print(f"| {name:<28} | {rps:>9.0f} | {p50:>7.2f} | {p99:>7.2f} | {rps / nginx_rps:>6.2f} | {rps / auth_rps:>6.2f} | {cpu_text:>10} |")
    public, token_rps = med["5 authgate, public path"][0], med["6 authgate, valid token"][0]
    caddy = med["4 Caddy + forward_auth"][0]
    print(f"\nvalid token / public path: {token_rps / public:.2f} (target >= 0.95)")
    print(f"valid token / nginx auth_request: {token_rps / auth_rps:.2f} (target >= 1.0)")
    print(f"valid token / Caddy forward_auth: {token_rps / caddy:.2f} (target >= 2.5)")
    if "P pingora alone, no filters" in med:
        bare = med["P pingora alone, no filters"][0]
        print(f"public path / pingora alone: {public / bare:.2f}; valid token / pingora alone: {token_rps / bare:.2f}")
        cpu_bare, cpu_token = med["P pingora alone, no filters"][3], med["6 authgate, valid token"][3]
        print(f"valid token CPU per request / pingora alone's: {cpu_token / cpu_bare:.2f} (target <= 1.10)")



def flood_scenario(creds, flood):
    """p99 of proxied requests with and without a login flood next to them."""
    base = [wrk(f"http://127.0.0.1:{P_GATE}/api/x", creds, conns=CONNS // 5 or 1)[2] for _ in range(ROUNDS)]
    flooded, login_rates = [], []
    for _ in range(ROUNDS):
        f = subprocess.Popen(["wrk", "-t1", "-c16", f"-d{DURATION + 2}s", "-s", flood, f"http://127.0.0.1:{P_GATE}/api/auth/login"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(1)
        flooded.append(wrk(f"http://127.0.0.1:{P_GATE}/api/x", creds, conns=CONNS // 5 or 1)[2])
        out, _ = f.communicate()
        login_rates.append(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))
    b, fl = statistics.median(base), statistics.median(flooded)
    print(f"p99 of proxied requests (-c{CONNS // 5 or 1}): {b:.2f} ms alone, {fl:.2f} ms during a login flood: {fl / b:.2f}x (target <= 2)")
    print(f"login flood (wrk -c16 on /api/auth/login): {statistics.median(login_rates):.1f} answers/s (200, or 503 when the queue is full)")


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
