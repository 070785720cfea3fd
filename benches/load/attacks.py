#!/usr/bin/env python3
"""The attacks of issue 13 against a running authgate, on loopback only, each bounded in time.

Run through benches/load/attacks.sh, which builds and starts the gateway. Every attacker and
prober here is a plain asyncio socket: what is measured is the gateway, not a client library.

  idle      N keep-alive connections that each make one request and then sit idle
  slowloris N connections trickling their request header one byte a second
  login     100 connections flooding wrong-password logins from one address while another
            address logs in once a second

Addresses: Linux routes all of 127.0.0.0/8 to loopback, so attackers and the legitimate client
bind to different 127.x.y.z addresses and are different clients to the gateway.
"""

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import resource
import statistics
import time
import urllib.parse

PUBLIC_GET = b"GET /public/x HTTP/1.1\r\nHost: bench\r\n\r\n"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def read_response(reader):
    """Status and body of one Content-Length framed response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def request(host, port, raw, source="127.0.0.1", timeout=10.0):
    """One request on a new connection: (status, body, seconds); status 0 when refused or cut."""
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(source, 0)), timeout)
    except (OSError, asyncio.TimeoutError):
        return 0, b"", time.perf_counter() - started
    try:
        writer.write(raw)
        status, body = await asyncio.wait_for(read_response(reader), timeout)
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        status, body = 0, b""
    finally:
        writer.close()
    return status, body, time.perf_counter() - started


def login_request(user, password):
    form = urllib.parse.urlencode({
        "user": base64.b64encode(user.encode()).decode(),
        "password": base64.b64encode(password.encode()).decode(),
        "gwos-app-name": "bench",
    }).encode()
    return (b"POST /api/auth/login HTTP/1.1\r\nHost: bench\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form)


def authed_get(token):
    return (b"GET /api/hosts HTTP/1.1\r\nHost: bench\r\nGWOS-API-TOKEN: " + token +
            b"\r\nGWOS-APP-NAME: bench\r\nConnection: close\r\n\r\n")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def p99(values):
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)] if ordered else float("nan")


async def metric(args, name):
    status, body, _ = await request(args.host, args.admin_port,
                                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def probes(args, token, seconds, every=0.05):
    """Authenticated GETs (each on a new connection, from an address no attacker uses) and
    /healthz, side by side for `seconds`: their latencies and failures."""
    gets, health, failed = [], [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        (s1, _, t1), (s2, _, t2) = await asyncio.gather(
            request(args.host, args.port, authed_get(token), source="127.0.200.1"),
            request(args.host, args.admin_port,
                    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        if s1 == 200:
            gets.append(t1 * 1000)
        else:
            failed += 1
        if s2 == 200:
            health.append(t2 * 1000)
        else:
            failed += 1
        await asyncio.sleep(every)
    return {"get_p99_ms": round(p99(gets), 1), "healthz_p99_ms": round(p99(health), 1),
            "probes": len(gets) + len(health), "probe_failures": failed}


async def login_token(args):
    status, body, _ = await request(args.host, args.port,
                                    login_request(args.user, args.password), source="127.0.200.1")
    assert status == 200, f"login for the probes failed: {status} {body!r}"
    return body


async def hold_idle(args, source, held, refused):
    """One request, then idle until the server closes the connection: `held` gets the task that
    says when (closing our end at once, so that descriptors are not held past that)."""
    writer = None
    try:
        reader, writer = await asyncio.open_connection(args.host, args.port, local_addr=(source, 0))
        writer.write(PUBLIC_GET)
        status, _ = await asyncio.wait_for(read_response(reader), 30)
        if status != 200:
            raise OSError(status)
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        refused.append(source)
        if writer:
            writer.close()
        return
    held.append(asyncio.ensure_future(closed_by_server(reader, writer)))


def sources(count, per_address):
    """`count` source addresses, `per_address` connections from each: 127.1.x.y."""
    out = []
    for i in range(count):
        out += [f"127.1.{i // 250}.{1 + i % 250}"] * per_address
    return out


async def closed_by_server(reader, writer=None):
    try:
        while await reader.read(4096):
            pass
    except OSError:
        pass
    if writer:
        writer.close()
    return time.monotonic()


async def attack_idle(args):
    token = await login_token(args)
    quiet = await probes(args, token, 5)
    rss_before = rss_kib(args.pid)
    held, refused = [], []
    addrs = sources(args.addresses, args.connections // args.addresses)
    for batch in range(0, len(addrs), 500):
        await asyncio.gather(*(hold_idle(args, s, held, refused) for s in addrs[batch:batch + 500]))
    idle_since = time.monotonic()
    open_now = await metric(args, "authgate_connections_open")
    rss_after = rss_kib(args.pid)
    under = await probes(args, token, 10)
    gone = [c - idle_since for c in await asyncio.gather(*held)]
    return {
        "attack": f"{args.connections} idle keep-alive connections from {args.addresses} addresses",
        "admitted": len(held), "refused": len(refused), "open_on_gateway": int(open_now),
        "rss_per_connection_kib": round((rss_after - rss_before) / max(1, len(held)), 1),
        "probes_quiet": quiet, "probes_under_attack": under,
        "closed_after_s": {"first": round(min(gone), 1), "median": round(statistics.median(gone), 1),
                           "last": round(max(gone), 1)} if gone else None,
        "shed": int(await metric(args, 'authgate_connections_closed_total{reason="shed"}')),
    }


async def trickle(args, source, started, outcome):
    try:
        reader, writer = await asyncio.open_connection(args.host, args.port, local_addr=(source, 0))
    except OSError:
        outcome["refused"] += 1
        return
    header = b"GET /public/x HTTP/1.1\r\nHost: bench\r\n" + b"X-Slow: " + b"a" * 200
    closed = asyncio.ensure_future(closed_by_server(reader))
    for byte in header:
        if closed.done():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except OSError:
            break
        await asyncio.wait([closed], timeout=1.0)
    outcome["closed_after"].append((await closed) - started)
    writer.close()


async def attack_slowloris(args):
    token = await login_token(args)
    quiet = await probes(args, token, 5)
    rss_before = rss_kib(args.pid)
    outcome = {"refused": 0, "closed_after": []}
    started = time.monotonic()
    addrs = sources(args.addresses, args.connections // args.addresses)
    tasks = [asyncio.ensure_future(trickle(args, s, started, outcome)) for s in addrs]
    await asyncio.sleep(3)
    open_now = await metric(args, "authgate_connections_open")
    rss_after = rss_kib(args.pid)
    under = await probes(args, token, 5)
    await asyncio.gather(*tasks)
    gone = outcome["closed_after"]
    return {
        "attack": f"{args.connections} slowloris connections (1 byte/s) from {args.addresses} addresses",
        "open_on_gateway_at_3s": int(open_now), "refused": outcome["refused"],
        "rss_per_connection_kib": round((rss_after - rss_before) / max(1, open_now), 1),
        "probes_quiet": quiet, "probes_under_attack": under,
        "closed_after_s": {"median": round(statistics.median(gone), 1), "last": round(max(gone), 1)},
        "header_timeouts": int(await metric(args, 'authgate_connections_closed_total{reason="header_timeout"}')),
    }


async def flooder(args, stop, answers):
    """One connection (reopened when closed) posting wrong-password logins back to back."""
    wrong = login_request(args.user, "wrong-password")
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(args.host, args.port,
                                                           local_addr=("127.0.0.1", 0))
        except OSError:
            await asyncio.sleep(0.01)
            continue
        try:
            while not stop.is_set():
                writer.write(wrong)
                status, _ = await read_response(reader)
                answers.append((time.monotonic(), status))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def legit_logins(args, seconds):
    results = []
    for _ in range(seconds):
        status, _, took = await request(args.host, args.port,
                                        login_request(args.user, args.password), source="127.0.0.2")
        results.append((status, took * 1000))
        await asyncio.sleep(max(0.0, 1.0 - took))
    return results


def run_flood(args, seconds, results):
    """The flood, in a process of its own: its event loop must not delay the legitimate client's
    (which would be counted as the gateway's latency)."""
    async def flood():
        stop, answers = asyncio.Event(), []
        tasks = [asyncio.ensure_future(flooder(args, stop, answers)) for _ in range(100)]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        return answers
    raise_fd_limit()
    # A real attacker does not run on the gateway's cores; here it does (two cores, loopback).
    # At the lowest priority its own CPU use is not counted as the gateway's latency.
    os.nice(19)
    started = time.monotonic()
    results.put([(t - started, s) for t, s in asyncio.run(flood())])


async def attack_login(args):
    quiet = await legit_logins(args, args.seconds)
    results = multiprocessing.Queue()
    flood = multiprocessing.Process(target=run_flood, args=(args, args.seconds + 1, results))
    flood.start()
    await asyncio.sleep(1)
    during = await legit_logins(args, args.seconds)
    answers = results.get()
    flood.join()
    second_half = [s for t, s in answers if t >= args.seconds / 2]
    checked = sum(1 for s in second_half if s == 401)
    ok = [t for s, t in during if s == 200]
    return {
        "attack": f"100 connections of wrong-password logins from one address for {args.seconds} s",
        "legit_logins": len(during), "legit_succeeded_pct": round(100 * len(ok) / len(during), 1),
        "legit_p99_ms_quiet": round(p99([t for _, t in quiet]), 1),
        "legit_median_ms_quiet": round(statistics.median([t for _, t in quiet]), 1),
        "legit_median_ms_under_flood": round(statistics.median(ok), 1),
        "legit_p99_ms_under_flood": round(p99(ok), 1),
        "legit_ms_under_flood": [round(t) for _, t in during],
        "attacker_answers": {str(code): sum(1 for _, s in answers if s == code)
                             for code in sorted({s for _, s in answers})},
        "attacker_passwords_checked_per_s_second_half": round(checked / (args.seconds / 2), 2),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("attack", choices=["idle", "slowloris", "login"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--connections", type=int, default=20000)
    parser.add_argument("--addresses", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin-demo")
    args = parser.parse_args()
    raise_fd_limit()
    attack = {"idle": attack_idle, "slowloris": attack_slowloris, "login": attack_login}[args.attack]
    print(json.dumps(asyncio.run(attack(args)), indent=1))


if __name__ == "__main__":
    main()
