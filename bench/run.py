#!/usr/bin/env python3
"""Side-by-side load benchmark: hookgate against nginx and haproxy as plain reverse proxies.

Usage:
    python3 bench/run.py                              # everything, 3 rounds of 5 s
    python3 bench/run.py --duration 2 --rounds 1      # quick look
    python3 bench/run.py --scenarios keepalive,forged --no-build
    python3 bench/run.py --write                      # also write bench/RESULTS.md

Options:
    --duration S     seconds per wrk run (default 5)
    --rounds N       rounds per scenario; targets are interleaved A B C A B C ... and
                     the median of each figure is reported (default 3)
    --scenarios L    comma list out of: keepalive, body64k, body1m, forged, allcores,
                     tls, h2c, queued, rss, crypto, stages, profile (default: all, in
                     that order)
    --no-build       do not run `cargo build --release` first
    --write          also write the whole report to bench/RESULTS.md (overwritten),
                     and the profile scenario's flamegraphs to bench/flamegraphs/
                     (target/flamegraphs/ otherwise)
    --peers DIR      directory holding nginx.conf, haproxy.cfg and payload.json
                     (default: <repo>/../shared/bench)

The keepalive scenario has a fourth row: hookgate on a route with no signature to
check (`verify: { none: true }`, allowlist only), the verification's cost measured.

Setup (2 cores): the upstream sink (`hookgate sink`, 1 worker) and wrk share core 0;
the proxy under test (hookgate, nginx or haproxy, one worker each) runs on core 1. The
`allcores` scenario runs the proxies unpinned with 2 workers each and wrk unpinned. The
`tls` scenario runs them pinned, each terminating TLS on its usual port with a
self-signed ECDSA P-256 certificate made with openssl in the run's temp directory
(haproxy only if its build has OpenSSL), and wrk targets https://. The `h2c` scenario
runs them pinned speaking cleartext HTTP/2 with prior knowledge to the sender (nginx
`listen ... http2`, haproxy `proto h2`, hookgate as configured) and HTTP/1.1 to the
sink, driven by h2load (skipped with a note when h2load is not installed). The `queued`
scenario runs hookgate alone (pinned) with a store in the temp directory and a queued
twin of the bench route (/hooks/expel-queued, `delivery: queued`): interleaved runs of
the sync route, the queued route with the sink up (accept + deliver; the backlog left
is read from `GET /queue/stats`, or the store file read-only), and the queued route with
the sink stopped, with synchronous FULL and NORMAL.
The `stages` scenario runs the criterion bench of each pipeline stage
(benches/pipeline.rs) and the allocation count (benches/allocs.rs) on core 1 and sets
the stages of the bench request against what a whole request cost core 1 in keepalive.
The report opens with a summary: one table of every side-by-side scenario, each figure
with its ratio to haproxy and nginx and that ratio's range round by round.
The `profile` scenario samples one worker's process with `perf record` (DWARF call
graphs) in the middle of a keep-alive run (hookgate signed, hookgate forged, haproxy,
nginx; pinned as above), splits its samples by leaf function (kernel, SHA-256, the
allocator, libc, the rest) and writes a flamegraph per run with inferno (skipped with a
note without perf or inferno: `cargo install inferno --locked`).
Everything listens on and talks to 127.0.0.1 only: sink :9000, hookgate :9100 (admin
:9101), nginx :9200, haproxy :9300. Every process started is killed (process group)
on exit, on errors and on Ctrl-C.

Needs wrk, nginx, haproxy, taskset and openssl, and h2load for `h2c`
(apt-get update && apt-get install -y wrk nginx-light haproxy nghttp2-client). Python
stdlib only.
"""

import argparse
import datetime
import errno
import hashlib
import hmac
import http.client
import json
import math
import os
import platform
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(REPO, "target", "release", "hookgate")
RESULTS = os.path.join(REPO, "bench", "RESULTS.md")

SECRET = b"bench-secret-0123456789"
HOST = "127.0.0.1"
SINK_PORT = 9000
HOOKGATE_PORT = 9100
ADMIN_PORT = 9101
NGINX_PORT = 9200
HAPROXY_PORT = 9300
PATH = "/hooks/expel"
# The keepalive scenario's extra hookgate row: a route with no signature to check
# (`verify: { none: true }`, allowlist only), so that the table shows what the
# verification itself costs against the same gateway doing everything else.
OPEN_ROUTE = "open"
OPEN_PATH = "/hooks/open"
OPEN_TARGET = "hookgate verify: none"
# The `queued` scenario's twin of the bench route: same verification, delivery: queued.
QUEUED_ROUTE = "expel-queued"
QUEUED_PATH = "/hooks/expel-queued"
# The queued route's concurrent deliveries (the default, 1, keeps them in order; the
# bench lets the dispatcher keep up with wrk's 32 connections).
QUEUED_CONCURRENCY = 32
# After a queued run with the sink up, how long the backlog gets to drain (the rate it
# drains at is reported either way).
QUEUED_DRAIN_LIMIT = 15.0

# The per-run figures of usage_figures (CPU, busy shares, TCP segments), kept as
# medians over the rounds.
USAGE_KEYS = ("cpu_us", "busy", "gen", "sink_busy", "segs", "pure_acks", "preempt_s")
# The side-by-side scenarios the summary table gathers.
SUMMARY_SCENARIOS = ["keepalive", "body64k", "body1m", "allcores", "tls", "h2c"]

# Targets in the order they are run within a round (A B C).
TARGETS = [("hookgate", HOOKGATE_PORT), ("nginx", NGINX_PORT), ("haproxy", HAPROXY_PORT)]

PROXY_CORE = "1"
LOAD_CORE = "0"  # wrk and the sink

ALL_SCENARIOS = [
    "keepalive",
    "body64k",
    "body1m",
    "forged",
    "allcores",
    "tls",
    "h2c",
    "queued",
    "rss",
    "crypto",
    "stages",
    "profile",
]

# The `profile` scenario: perf's sampling rate and stack copy (DWARF unwinding: the
# release build has no frame pointers; 64 KiB of stack reaches main() for 97% of samples).
PERF_FREQ = 499
PERF_STACK = 65528
FLAMEGRAPHS = os.path.join(REPO, "bench", "flamegraphs")
FLAMEGRAPHS_SCRATCH = os.path.join(REPO, "target", "flamegraphs")
# The hashes of hookgate's HMAC schemes, as `openssl speed -evp` and the criterion
# throughput bench (throughput/hmac_<hash>_1mib) name them.
CRYPTO_HASHES = ["sha1", "sha256", "sha512"]
# The `stages` scenario: (stage, criterion id in benches/pipeline.rs, an id whose time
# is subtracted (the parse bench's copy of the head), whether the load scenarios' signed
# request goes through it).
STAGES = [
    ("HTTP/1.1 head, as wrk sends it (6 fields)", "parse/wrk_6_fields", "parse/wrk_6_fields_copy_only", True),
    ("HTTP/1.1 head, a fuller delivery (11 fields)", "parse/delivery_11_fields", "parse/delivery_11_fields_copy_only", False),
    ("route: one path among 20 routes", "route/hit_plain", None, True),
    ("route: a host-specific route (Host with a port)", "route/hit_host_with_port", None, False),
    ("route: no route (404)", "route/miss", None, False),
    ("method: POST", "method/post", None, True),
    ("method: GET (405)", "method/get_rejected", None, False),
    ("client IP: untrusted peer", "client_ip/untrusted_peer", None, True),
    ("client IP: trusted peer, 3-hop X-Forwarded-For", "client_ip/trusted_peer_xff_3_hops", None, False),
    ("allowlist: none configured", "allowlist/no_allowlist", None, True),
    ("allowlist: 10 networks, the last one hit", "allowlist/10_nets_hit_last", None, False),
    ("allowlist: 10 networks, missed (403)", "allowlist/10_nets_miss", None, False),
    ("rate limit: per route", "rate/key_route", None, False),
    ("rate limit: per client IP", "rate/key_client_ip", None, False),
    ("declared size against max_body", "body/check_declared_size", None, True),
    ("verify: Expel HMAC-SHA256 over the 1682-byte sample", "verify/expel_1682b", None, True),
    ("forward: upstream head of an 11-field delivery, untrusted peer", "forward/upstream_head_untrusted_peer", None, True),
    ("forward: the same, trusted peer (X-Forwarded-For appended)", "forward/upstream_head_trusted_peer", None, False),
    ("forward: upstream path, no query", "forward/upstream_path_no_query", None, True),
    ("forward: upstream path with a query", "forward/upstream_path_with_query", None, False),
]
PROFILE_TOOLS = ["perf", "inferno-collapse-perf", "inferno-flamegraph"]
PROFILE_HINT = "apt-get install -y linux-perf && cargo install inferno --locked"

RSS_CONNECTIONS = 10_000
RSS_WINDOW = 256

TOOLS = ["wrk", "nginx", "haproxy", "taskset", "openssl"]
INSTALL_HINT = "apt-get update && apt-get install -y wrk nginx-light haproxy nghttp2-client"


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------- output


class Report:
    """Collects the report (stdout) while progress goes to stderr."""

    def __init__(self):
        self.lines = []

    def line(self, text=""):
        print(text, flush=True)
        self.lines.append(text)

    def table(self, header, rows):
        self.line("| " + " | ".join(header) + " |")
        self.line("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self.line("| " + " | ".join(str(c) for c in row) + " |")
        self.line()

    def move(self, start, end, to):
        """Moves lines[start:end] (already printed) to before line `to` of the report."""
        block = self.lines[start:end]
        del self.lines[start:end]
        self.lines[to:to] = block

    def text(self):
        return "\n".join(self.lines) + "\n"


def progress(msg):
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ processes


class Processes:
    """Every process started, each in its own process group, killed on exit."""

    def __init__(self):
        self.procs = {}  # name -> (Popen, log path)

    def start(self, name, cmd, log_path, cwd=None):
        if name != "wrk":
            progress(f"start {name}: {shlex.join(cmd)}")
        log = open(log_path, "ab")
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            log.close()
        self.procs[name] = (proc, log_path)
        return proc

    def stop(self, name, grace=5.0):
        entry = self.procs.pop(name, None)
        if entry is None:
            return
        proc, _ = entry
        kill_group(proc, grace)

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)

    def log_tail(self, name, lines=15):
        entry = self.procs.get(name)
        if entry is None:
            return ""
        try:
            with open(entry[1], "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])


def kill_group(proc, grace=5.0):
    """SIGTERM to the process group, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # Also reap anything left in the group (nginx workers, a stuck child).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass


def port_open(port, timeout=0.2):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(procs, name, proc, port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(
                f"{name} exited with status {proc.returncode} before listening on "
                f"{HOST}:{port}; its log:\n{procs.log_tail(name)}"
            )
        if port_open(port):
            return
        time.sleep(0.05)
    raise BenchError(
        f"{name} did not listen on {HOST}:{port} within {timeout:.0f}s; its log:\n"
        f"{procs.log_tail(name)}"
    )


def pinned(core, cmd):
    return ["taskset", "-c", core] + cmd if core is not None else cmd


def run_cmd(cmd, timeout, cwd=None):
    """Runs a short command; returns (status, stdout+stderr text)."""
    try:
        r = subprocess.run(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return -1, str(e)
    return r.returncode, r.stdout.decode("utf-8", "replace")


def cargo_bench(scenario, bench, args):
    """Builds `cargo bench --bench <bench>` (untimed), then runs it pinned to the proxy
    core with `args` after `--`; returns its output. A failure is a BenchError."""
    progress(f"{scenario}: building the {bench} bench")
    status, out = run_cmd(["cargo", "bench", "--bench", bench, "--no-run"], timeout=1800, cwd=REPO)
    if status != 0:
        raise BenchError(f"cargo bench --bench {bench} --no-run failed:\n{out[-3000:]}")
    cmd = ["cargo", "bench", "--bench", bench, "--", *args]
    progress(f"{scenario}: {shlex.join(cmd)} (core {PROXY_CORE})")
    status, out = run_cmd(pinned(PROXY_CORE, cmd), timeout=900, cwd=REPO)
    if status != 0:
        raise BenchError(f"{shlex.join(cmd)} failed:\n{out[-3000:]}")
    return out


def parse_openssl_speed(out, h):
    """`openssl speed -evp <h> -bytes 1048576` output: (GB/s, the figure as printed).
    OpenSSL names the row sha256, sha2-256 or SHA-256 depending on its version."""
    digits = h[3:]
    m = re.search(rf"^(?:{h}|sha2-{digits}|sha-?{digits})\s+([\d.]+)k\s*$", out, re.M | re.I)
    if not m:
        raise BenchError(f"cannot read openssl speed output for {h}:\n{out}")
    return float(m.group(1)) * 1000 / 1e9, m.group(1) + "k"


THRPT_UNITS = {"KB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9, "KiB/s": 2**10, "MiB/s": 2**20, "GiB/s": 2**30}


def parse_criterion_thrpt(out, bench_id):
    """criterion's console output: the median throughput of `bench_id` (the middle one of
    `thrpt: [low median high]`) as (GB/s, the figure as printed)."""
    m = re.search(
        rf"^{re.escape(bench_id)}\s.*?thrpt:\s+\[\s*\S+\s+\S+\s+([\d.]+)\s+([KMG]i?B/s)",
        out,
        re.S | re.M,
    )
    if not m:
        raise BenchError(f"cannot read criterion output for {bench_id}:\n{out[-3000:]}")
    return float(m.group(1)) * THRPT_UNITS[m.group(2)] / 1e9, f"{m.group(1)} {m.group(2)}"


def parse_allocs(out):
    """`cargo bench --bench allocs` output: [(request, allocations, bytes)] for its three
    rows (each label ends with the status, "(200)")."""
    rows = re.findall(r"^(\S.*?\(\d{3}\))\s+([\d.]+)\s+(\d+)\s*$", out, re.M)
    if len(rows) != 3:
        raise BenchError(f"cannot read the allocs bench output:\n{out[-2000:]}")
    return rows


def parse_idle_heap(out):
    """The allocs bench's last figure: the heap bytes an idle keep-alive connection holds
    and its allocations as [(count per connection, requested size)]."""
    m = re.search(r"^heap held per idle keep-alive connection .*?: (\d+) bytes$", out, re.M)
    if not m:
        raise BenchError(f"cannot read the allocs bench's idle heap:\n{out[-2000:]}")
    sizes = re.findall(r"^\s+([\d.]+) × (\d+) B$", out[m.end():], re.M)
    return int(m.group(1)), [(float(n), int(size)) for n, size in sizes]


def criterion_median_ns(bench_id):
    """The median (ns) criterion recorded for `bench_id` ("group/name") in its last run."""
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    path = os.path.join(target, "criterion", *bench_id.split("/"), "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"]
    except (OSError, ValueError, KeyError) as e:
        raise BenchError(f"no criterion estimate for {bench_id} ({path}: {e})")


def haproxy_has_tls():
    """Whether this haproxy build can terminate TLS (`haproxy -vv` lists OpenSSL)."""
    status, out = run_cmd(["haproxy", "-vv"], 10)
    return status == 0 and bool(
        re.search(r"USE_OPENSSL=1|\+OPENSSL\b|Built with OpenSSL", out)
    )


def make_cert(directory):
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost, valid 2 days.
    Returns (cert path, key path, cert+key path for haproxy)."""
    os.makedirs(directory, exist_ok=True)
    crt = os.path.join(directory, "server.crt")
    key = os.path.join(directory, "server.key")
    pem = os.path.join(directory, "server.pem")
    cmd = [
        "openssl", "req", "-x509",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", crt, "-days", "2",
        "-subj", "/CN=localhost",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ]
    progress(f"tls: {shlex.join(cmd)}")
    status, out = run_cmd(cmd, 30)
    if status != 0:
        raise BenchError(f"openssl req failed ({status}):\n{out}")
    with open(pem, "wb") as f:
        for part in (crt, key):
            with open(part, "rb") as src:
                f.write(src.read())
    os.chmod(key, 0o600)
    os.chmod(pem, 0o600)
    return crt, key, pem


def negotiated(port):
    """Protocol, cipher and key exchange an OpenSSL client (as wrk's) gets from the
    server on `port`, from `openssl s_client`."""
    status, out = run_cmd(
        ["openssl", "s_client", "-connect", f"{HOST}:{port}"], 15
    )
    # "New, TLSv1.3, Cipher is ..." is always printed after a handshake; the
    # SSL-Session block ("Protocol :", "Cipher :") only once a TLS 1.3 server's
    # session ticket arrived before s_client hung up.
    m = re.search(r"^New, (\S+), Cipher is (\S+)", out, re.M)
    if not m or m.group(2) == "(NONE)":
        raise BenchError(f"openssl s_client to {HOST}:{port} got no session ({status}):\n{out[-2000:]}")
    text = f"{m.group(1)}, {m.group(2)}"
    kx = re.search(r"^Server Temp Key:\s*([^,\n]+)", out, re.M)
    if kx:
        text += f", key exchange {kx.group(1).strip()}"
    return text


# -------------------------------------------------------------------------- payloads


def signature(body):
    return "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()


def generated_body(size):
    """A JSON event of exactly `size` bytes: a batch of alerts, then padding."""
    head = '{"guid":"bench-%d","event_name":"alerts_batch","data":{"alerts":[' % size
    tail = '],"note":"'
    end = '"}}'
    parts = []
    length = len(head) + len(tail) + len(end)
    i = 0
    while True:
        alert = json.dumps(
            {
                "id": f"5e8b2a1c-0000-4000-8000-{i:012d}",
                "title": "Suspicious PowerShell execution on FINANCE-WS-12",
                "severity": ["LOW", "MEDIUM", "HIGH", "CRITICAL"][i % 4],
                "host": {"hostname": f"WS-{i % 97:02d}", "ip": f"10.1.{i % 250}.{i % 200}"},
                "tags": ["powershell", "lateral-movement"],
            },
            separators=(",", ":"),
        )
        extra = len(alert) + (1 if parts else 0)
        if length + extra > size:
            break
        parts.append(alert)
        length += extra
        i += 1
    data = (head + ",".join(parts) + tail + "x" * (size - length) + end).encode()
    assert len(data) == size, (len(data), size)
    json.loads(data)
    return data


def lua_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_lua(path, body_path, sig):
    with open(path, "w") as f:
        f.write(
            "-- generated by bench/run.py: POST the body file, signed for hookgate's expel route\n"
            f"local f = assert(io.open({lua_string(body_path)}, \"rb\"))\n"
            'wrk.method = "POST"\n'
            'wrk.body = f:read("*a")\n'
            "f:close()\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Expel-Signature-256"] = {lua_string(sig)}\n'
        )


class Payload:
    def __init__(self, name, body_path, sig, lua_path):
        self.name = name
        self.body_path = body_path
        self.sig = sig
        self.lua = lua_path
        with open(body_path, "rb") as f:
            self.body = f.read()


# ------------------------------------------------------------------------------ wrk


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(out):
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"^\s+(\d+) requests in", out, re.M)
    if not (rps and p50 and p99 and total):
        raise BenchError(f"cannot parse wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return {
        "rps": float(rps.group(1)),
        "p50": to_ms(p50.group(1)),
        "p99": to_ms(p99.group(1)),
        "requests": int(total.group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket": sum(int(x) for x in sock.groups()) if sock else 0,
    }


# ---------------------------------------------------------------------- HTTP helpers


def h2load_time(text):
    """An h2load duration ("564us", "5.59ms", "1.2s") in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise BenchError(f"cannot read h2load time {text!r}")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def parse_h2load(out):
    rps = re.search(r"^finished in \S+, ([\d.]+) req/s", out, re.M)
    req = re.search(r"^requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out, re.M)
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, re.M)
    times = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    proto = re.search(r"^Application protocol: (\S+)", out, re.M)
    if not (rps and req and codes and times):
        raise BenchError(f"cannot read h2load output:\n{out}")
    return {
        "rps": float(rps.group(1)),
        "requests": int(req.group(1)),
        "failed": int(req.group(3)),
        "non2xx": sum(int(codes.group(i)) for i in (2, 3, 4)),
        "mean": h2load_time(times.group(3)),
        "sd": h2load_time(times.group(4)),
        "protocol": proto.group(1) if proto else "?",
    }


def request_bytes(port, body, sig):
    head = (
        f"POST {PATH} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Expel-Signature-256: {sig}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


def unverified_tls_context():
    """A client context for the bench's self-signed certificate: no verification,
    ALPN http/1.1 (what wrk gets too)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def probe(port, body, sig, scheme="http", path=PATH):
    """One request with http.client (over TLS, unverified, if scheme is https);
    returns the status."""
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            HOST, port, timeout=10, context=unverified_tls_context()
        )
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": "application/json", "Expel-Signature-256": sig},
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def response_complete(buf):
    """(status, complete) for an HTTP/1.1 response in `buf`; status None if unknown."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None, False
    head = buf[:end].decode("latin-1").split("\r\n")
    try:
        status = int(head[0].split()[1])
    except (IndexError, ValueError):
        return None, True
    length = None
    chunked = False
    for h in head[1:]:
        name, _, value = h.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    body = buf[end + 4 :]
    if chunked:
        return status, body.endswith(b"0\r\n\r\n")
    return status, len(body) >= (length or 0)


class Conn:
    __slots__ = ("sock", "out", "buf", "status", "done", "failed")

    def __init__(self, sock, out):
        self.sock = sock
        self.out = memoryview(out)
        self.buf = b""
        self.status = None
        self.done = False
        self.failed = None


def open_idle_connections(port, n, request, window=RSS_WINDOW, timeout=10.0):
    """Opens `n` keep-alive connections, each sending `request` and reading its whole
    response, with at most `window` of them unanswered at a time (so that no listen
    backlog overflows); returns the connections, all left open, and the time taken."""
    sel = selectors.DefaultSelector()
    conns = []
    t0 = time.monotonic()
    linger = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT pile-up
    active = {}  # Conn -> deadline
    next_check = t0
    while len(conns) < n or active:
        while len(active) < window and len(conns) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            c = Conn(s, request)
            conns.append(c)
            err = s.connect_ex((HOST, port))
            if err not in (0, errno.EINPROGRESS):
                c.failed = f"connect: {os.strerror(err)}"
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
            active[c] = time.monotonic() + timeout
        for key, events in sel.select(timeout=0.2):
            c = key.data
            try:
                if events & selectors.EVENT_WRITE:
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, f"connect: {os.strerror(err)}")
                    sent = c.sock.send(c.out)
                    c.out = c.out[sent:]
                    if not len(c.out):
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                data = c.sock.recv(65536)
                if not data:
                    raise OSError("closed before the whole answer")
                c.buf += data
                c.status, c.done = response_complete(c.buf)
            except BlockingIOError:
                continue
            except OSError as e:
                c.failed = e.strerror or str(e)
            if c.done or c.failed:
                sel.unregister(c.sock)
                del active[c]
        now = time.monotonic()
        if now >= next_check:
            next_check = now + 0.5
            for c, deadline in list(active.items()):
                if now > deadline:
                    c.failed = f"no answer within {timeout:.0f} s"
                    sel.unregister(c.sock)
                    del active[c]
    sel.close()
    return conns, time.monotonic() - t0


def still_open(sock):
    try:
        data = sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return bool(data)


def group_members(pgid):
    """(pid, fields of /proc/PID/stat after the command name) for each process of a
    process group (a proxy's master and workers)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid:
                yield int(entry), fields
        except (OSError, ValueError):
            continue


def status_number(path, key):
    """The number on the `key:` line of a /proc status file; 0 if the process is gone
    or the line is missing."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def group_rss_kb(pgid):
    """Sum of VmRSS over the processes of a process group (master and workers)."""
    return sum(status_number(f"/proc/{pid}/status", "VmRSS") for pid, _ in group_members(pgid))


def group_cpu_ticks(pgid):
    """(user, system) clock ticks the processes of a process group have used so far."""
    user = system = 0
    for _, fields in group_members(pgid):
        user += int(fields[11])
        system += int(fields[12])
    return user, system


def group_preemptions(pgid):
    """Involuntary context switches so far (the scheduler took the core from a runnable
    thread), summed over every thread of a process group's processes."""
    total = 0
    for pid, _ in group_members(pgid):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        total += sum(
            status_number(f"/proc/{pid}/task/{tid}/status", "nonvoluntary_ctxt_switches")
            for tid in tids
        )
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid):
    """CPU seconds (user + system) the processes of a process group have used so far."""
    return sum(group_cpu_ticks(pgid)) / CLK_TCK


def children_cpu_seconds():
    """CPU seconds (user + system) of every child this script has waited for so far:
    a load generator's own, once it has been reaped."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def usage_figures(usage, requests):
    """From a run's usage ({"wall", "proxy", "load", "sink"}: seconds, proxy and sink
    None when not running; "tcp": the machine's TCP segments sent and pure ACKs received
    over the run, or None) and its request count: the proxy's CPU µs per request, each
    process's busy share of one core, TCP segments and pure ACKs per request, and how
    often a second the scheduler took the core from the proxy ("preempted": its
    involuntary context switches over the run, or None)."""
    wall = usage["wall"]
    proxy, sink, tcp = usage["proxy"], usage["sink"], usage.get("tcp")
    preempted = usage.get("preempted")
    per_request = tcp is not None and bool(requests)
    return {
        "cpu_us": proxy / requests * 1e6 if proxy is not None and requests else None,
        "busy": proxy / wall if proxy is not None else None,
        "gen": usage["load"] / wall,
        "sink_busy": sink / wall if sink is not None else None,
        "segs": tcp["segs"] / requests if per_request else None,
        "pure_acks": tcp["pure_acks"] / requests if per_request else None,
        "preempt_s": preempted / wall if preempted is not None else None,
    }


def proc_net_counters(text, prefix):
    """{name: value} from a /proc/net/snmp or /proc/net/netstat section: a header line
    and a value line, both starting with `prefix` ("Tcp:", "TcpExt:")."""
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith(prefix)]
    if len(rows) < 2:
        return {}
    return {name: int(value) for name, value in zip(rows[0], rows[1])}


def tcp_counters():
    """The machine's TCP segments sent and pure ACKs received so far (every process:
    on loopback each segment is sent once and received once); None where /proc/net is
    not readable."""
    try:
        with open("/proc/net/snmp") as f:
            snmp = proc_net_counters(f.read(), "Tcp:")
        with open("/proc/net/netstat") as f:
            ext = proc_net_counters(f.read(), "TcpExt:")
    except OSError:
        return None
    if "OutSegs" not in snmp or "TCPPureAcks" not in ext:
        return None
    return {"segs": snmp["OutSegs"], "pure_acks": ext["TCPPureAcks"]}


def median_of(rs, key):
    """The median of `key` over the runs that have it, None if none has."""
    values = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(values) if values else None


def preemptions(hg, hap):
    """ "; preempted 12/s vs 30/s": how often the scheduler took the core from each
    (medians over the rounds), beside the p99 verdict it moves; "" if not measured."""
    a, b = hg.get("preempt_s"), hap.get("preempt_s")
    if a is None or b is None:
        return ""
    return f"; preempted {a:,.0f}/s vs {b:,.0f}/s"


def fmt_share(x):
    return "-" if x is None else f"{100 * x:.0f}%"


def forged_detail(f):
    """The forged scenario in one line: rejects/s against accepted req/s, the CPU cost
    of each, and how busy wrk was."""
    rejects, accepted = f["rejects"], f["accepted"]
    return (
        f"{rejects['rps']:,.0f} rejects/s, {paired_ratio(rejects, accepted, 'rps')} the "
        f"{accepted['rps']:,.0f} accepted req/s of the same rounds; per request hookgate "
        f"spends {fmt(rejects.get('cpu_us'), 2)} µs of CPU on a reject and "
        f"{fmt(accepted.get('cpu_us'), 2)} µs on an accepted delivery "
        f"({paired_ratio(accepted, rejects, 'cpu_us')}); wrk was "
        f"{fmt_share(rejects.get('gen'))} busy on its core during the forged runs"
    )


def segments(r):
    """ "4.00 (0.00)": TCP segments sent per request on the whole machine, and how many
    of them were pure ACKs (medians over the rounds)."""
    if r.get("segs") is None:
        return "-"
    return f"{r['segs']:.2f} ({r['pure_acks']:.2f})"


def busy_shares(r):
    """ "98% / 47% / 40%": the target's, the load generator's and the sink's busy share
    of one core (medians over the rounds)."""
    return " / ".join(fmt_share(r.get(key)) for key in ("busy", "gen", "sink_busy"))


CPU_NOTE = (
    "CPU µs/req: the target's CPU time (user + system, every process and thread of it, "
    "from /proc) over a run divided by the requests wrk counted; it includes the "
    "loopback TCP work the kernel does on the target's behalf. Unlike req/s it does not "
    "depend on which side of the machine ran out of CPU first, though a noisy neighbour "
    "still moves it; below 1.0× is better. busy: share of one core used during the run by "
    "the target, wrk and the sink (core 0 holds wrk and the sink in pinned modes: "
    "near 100% there, the figures are also bounded by the load side). preempted/s: how "
    "often a second the scheduler took the core from the target while it could run "
    "(its threads' involuntary context switches, /proc/PID/task/*/status): on a quiet "
    "core near 0; each one stalls every connection the target serves, and p99 grows "
    "with them (bench/README.md, eleventh pass). TCP segments/req: "
    "the machine's TCP segments sent over the run (/proc/net/snmp OutSegs) per request, "
    "and in brackets the pure ACKs among them (TcpExt TCPPureAcks): a keep-alive request "
    "through a proxy is 4 segments at the least, each ACK riding on data. (Said once, "
    "here, for every table of the report.)"
)


def kb_to_mb(kb):
    return kb * 1024 / 1e6


# ------------------------------------------------------------------------ the bench


def fmt(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def ratio(a, b):
    if a is None or not b:
        return None
    return a / b


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}×"


def round_ratios(a, b, key):
    """`a[key] / b[key]` round by round (round i of both ran side by side), over the
    rounds where both have the figure."""
    return [
        ra[key] / rb[key]
        for ra, rb in zip(a.get("rounds", []), b.get("rounds", []))
        if ra.get(key) is not None and rb.get(key)
    ]


def paired(a, b, key):
    """The ratio of a to b: the median of the round-by-round ratios (for an even count,
    the geometric mean of the middle two, so that 2.0 and 0.5 make 1.0); the ratio of
    the medians when the rounds are not there. None without figures.

    The rounds are interleaved so that each pair shares the machine's state of the
    moment: their ratio cancels the drift a ratio of two medians taken from different
    rounds keeps (one slow round for one target and a fast one for the other)."""
    per_round = round_ratios(a, b, key)
    if not per_round:
        return ratio(a.get(key), b.get(key))
    return math.exp(statistics.median(math.log(x) for x in per_round))


def paired_ratio(a, b, key):
    """paired(a, b, key) and the range of the round-by-round ratios: "1.02× (0.97–1.05)";
    "-" without figures."""
    x = paired(a, b, key)
    if x is None:
        return "-"
    per_round = round_ratios(a, b, key)
    if len(per_round) < 2:
        return fmt_ratio(x)
    return f"{x:.2f}× ({min(per_round):.2f}–{max(per_round):.2f})"


def round_cell(r):
    """One round of one target: "58,703 req/s, p99 1.660 ms, 16.22 µs"; h2load gives a
    mean latency instead of a p99, and no CPU per request."""
    parts = [f"{r['rps']:,.0f} req/s"]
    if r.get("p99") is not None:
        parts.append(f"p99 {r['p99']:.3f} ms")
    elif r.get("mean") is not None:
        parts.append(f"mean {r['mean']:.3f} ms")
    if r.get("cpu_us") is not None:
        parts.append(f"{r['cpu_us']:.2f} µs")
    return ", ".join(parts)


def rounds_rows(results):
    """Every round's figures of the side-by-side scenarios, a row per target, so that
    each paired ratio of the report can be worked out from the rounds it pairs."""
    targets = []
    for s in SUMMARY_SCENARIOS:
        if s in results:
            targets += [(s, name, r) for name, r in results[s].items()]
    if "forged" in results:
        f = results["forged"]
        targets += [("forged", "hookgate (forged)", f["rejects"]),
                    ("forged", "hookgate (accepted)", f["accepted"])]
    width = max((len(r.get("rounds", [])) for _, _, r in targets), default=0)
    rows = []
    for s, name, r in targets:
        cells = [round_cell(x) for x in r.get("rounds", [])]
        rows.append([s, name] + cells + ["-"] * (width - len(cells)))
    return width, rows


def at_the_bound(x, bound):
    """For a verdict: " (0.998× to three decimals)" when two decimals would print the
    ratio as the bound itself and so hide which side of it the ratio fell; else ""."""
    if x is None or f"{x:.2f}" != f"{bound:.2f}":
        return ""
    return f" ({x:.3f}× to three decimals)"


PROFILE_TOP = 10


def leaf_kind(leaf):
    """What a sampled function (the top of a stack, as inferno-collapse-perf --all
    names it) is: kernel, sha256, alloc, libc or own."""
    if leaf.endswith("_[k]"):
        return "kernel"
    low = leaf.lower()
    if "sha2::" in low or "sha256" in low:
        return "sha256"
    if (
        low.startswith(("mi_", "_mi_", "__rust_alloc", "__rust_dealloc", "__rust_realloc"))
        or low in ("malloc", "free", "realloc", "calloc", "cfree")
        or low.startswith(("_int_malloc", "_int_free", "malloc_", "__libc_malloc", "__libc_free"))
    ):
        return "alloc"
    if low.startswith(("__libc_", "__mem", "mem", "__strlen", "__strchr", "__gi_")) or "[libc" in low:
        return "libc"
    return "own"


def leaf_shares(folded):
    """Shares of the samples in inferno-collapse-perf output by leaf_kind, and the top
    PROFILE_TOP leaf functions: {"kernel": f, ..., "top": [(name, share)]}."""
    by_kind = {k: 0 for k in ("kernel", "sha256", "alloc", "libc", "own")}
    by_leaf = {}
    total = 0
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        leaf = stack.rsplit(";", 1)[-1]
        total += n
        by_kind[leaf_kind(leaf)] += n
        by_leaf[leaf] = by_leaf.get(leaf, 0) + n
    if total == 0:
        raise BenchError("profile: perf recorded no samples")
    shares = {k: v / total for k, v in by_kind.items()}
    top = sorted(by_leaf.items(), key=lambda kv: -kv[1])[:PROFILE_TOP]
    shares["top"] = [(short_symbol(name), n / total) for name, n in top]
    return shares


def short_symbol(name, width=60):
    """A function name short enough for a table cell: `_[k]` as ` [k]`, generics cut."""
    name = name.replace("_[k]", " [k]")
    name = re.sub(r"<[^<>]*>", "<…>", name)
    name = name.replace("|", "\\|")
    return name if len(name) <= width else name[: width - 1] + "…"


class Bench:
    def __init__(self, args, tmp, report):
        self.args = args
        self.tmp = tmp
        self.out = report
        self.procs = Processes()
        self.peers_dir = os.path.abspath(args.peers)
        self.mode = None  # which proxy set is running: "pinned", "allcores", "rss", "tls"
        self.results = {}  # scenario -> target -> medians
        self.cert = None  # (cert, key, cert+key) once the tls scenario made them
        self.haproxy_tls = None  # whether haproxy can terminate TLS (tls mode)
        self.negotiated = {}  # target -> "protocol, cipher, key exchange" (tls)
        self.rss = {}  # target -> dict
        self.crypto = None
        self.payloads = {}
        self.queue_source = None  # where the queued scenario read its counts: "admin", "sqlite"

    # ---------------------------------------------------------------- setup

    def prepare_payloads(self):
        sample = os.path.join(self.peers_dir, "payload.json")
        bodies = {
            "sample": sample,
            "64k": self.write_body("body64k.json", generated_body(64 * 1024)),
            "1m": self.write_body("body1m.json", generated_body(1024 * 1024)),
        }
        for name, path in bodies.items():
            with open(path, "rb") as f:
                sig = signature(f.read())
            lua = os.path.join(self.tmp, f"post-{name}.lua")
            write_lua(lua, path, sig)
            self.payloads[name] = Payload(name, path, sig, lua)
        forged_sig = "sha256=" + "0" * 64
        lua = os.path.join(self.tmp, "post-forged.lua")
        write_lua(lua, sample, forged_sig)
        self.payloads["forged"] = Payload("forged", sample, forged_sig, lua)

    def write_body(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def check_ports_free(self):
        busy = [
            p
            for p in (SINK_PORT, HOOKGATE_PORT, ADMIN_PORT, NGINX_PORT, HAPROXY_PORT)
            if port_open(p)
        ]
        if busy:
            raise BenchError(
                "port(s) already in use on 127.0.0.1: "
                + ", ".join(map(str, busy))
                + " (another benchmark, gateway or sink running?)"
            )

    def start_sink(self):
        cmd = pinned(
            LOAD_CORE,
            [BINARY, "sink", "--listen", f"{HOST}:{SINK_PORT}", "--workers", "1"],
        )
        proc = self.procs.start("sink", cmd, os.path.join(self.tmp, "sink.log"))
        wait_port(self.procs, "sink", proc, SINK_PORT)

    def queue_db(self, synchronous):
        """The store file of the `queued` scenario for a `synchronous` level."""
        name = "bench.db" if synchronous == "full" else f"bench-{synchronous}.db"
        return os.path.join(self.tmp, "queue", name)

    def hookgate_config(self, workers, tls=False, store=None):
        """store: None, or a `synchronous` level ("full" or "normal"): a config with a
        store in the run's temp directory and, after the bench route, its queued twin
        (QUEUED_PATH: the same verification and upstream, `delivery: queued`)."""
        path = os.path.join(
            self.tmp,
            f"hookgate-{workers}w{'-tls' if tls else ''}{f'-{store}' if store else ''}.yaml",
        )
        tls_section = ""
        if tls:
            crt, key, _ = self.cert
            tls_section = f"tls:\n  cert: {crt}\n  key: {key}\n"
        store_section = ""
        queued_route = ""
        if store:
            # FULL is the default: it is left implicit, as an operator would.
            level = "" if store == "full" else f", synchronous: {store}"
            store_section = f"store: {{ path: {self.queue_db(store)}{level} }}\n"
            queued_route = f"""  - name: {QUEUED_ROUTE}
    path: {QUEUED_PATH}
    verify: {{ preset: expel, secrets: ["{SECRET.decode()}"] }}
    max_body: 2MiB
    delivery: queued
    concurrency: {QUEUED_CONCURRENCY}
    upstream: http://{HOST}:{SINK_PORT}/expel
"""
        with open(path, "w") as f:
            f.write(
                f"""# generated by bench/run.py
listen: {HOST}:{HOOKGATE_PORT}
workers: {workers}
{tls_section}{store_section}admin:
  listen: {HOST}:{ADMIN_PORT}
shutdown_grace: 2s
# The load generator is one client address holding up to 10,000 connections (rss); the
# peers have no per-address cap either.
limits: {{ max_connections: 20000, max_connections_per_ip: 0 }}
routes:
  - name: expel
    path: {PATH}
    verify: {{ preset: expel, secrets: ["{SECRET.decode()}"] }}
    max_body: 2MiB
    upstream: http://{HOST}:{SINK_PORT}/expel
  - name: {OPEN_ROUTE}
    path: {OPEN_PATH}
    verify: {{ none: true }}
    allow_ips: [{HOST}/32]
    max_body: 2MiB
    upstream: http://{HOST}:{SINK_PORT}/expel
{queued_route}"""
            )
        return path

    def peer_config(self, filename, directory, edits):
        """A copy of a peer config in `directory` with `edits` [(regex, replacement)]
        applied, each of which must match exactly once."""
        with open(os.path.join(self.peers_dir, filename)) as f:
            text = f.read()
        for pattern, repl in edits:
            text, n = re.subn(pattern, repl, text, flags=re.M)
            if n != 1:
                raise BenchError(
                    f"{filename}: expected one match of {pattern!r}, found {n}; "
                    "has the peer config changed?"
                )
        os.makedirs(os.path.join(directory, "logs"), exist_ok=True)
        path = os.path.join(directory, filename)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_proxies(self, mode):
        """mode: "pinned" (1 worker each on core 1), "allcores" (2 workers each,
        unpinned), "rss" (as pinned, with the peers' connection caps raised to hold
        10,000 idle connections), "tls" (as pinned, each terminating TLS with the
        certificate from make_cert; haproxy left out if its build has no OpenSSL),
        "h2c" (as pinned, each taking cleartext HTTP/2 with prior knowledge)."""
        if self.mode == mode:
            return
        self.stop_proxies()
        workers = 2 if mode == "allcores" else 1
        core = None if mode == "allcores" else PROXY_CORE

        nginx_dir = os.path.join(self.tmp, f"nginx-{mode}")
        nginx_edits = [
            (r"^(\s*pid\s+)\S+;", rf"\g<1>{nginx_dir}/nginx.pid;"),
            (r"^(\s*error_log\s+)\S+", rf"\g<1>{nginx_dir}/error.log"),
        ]
        if mode == "allcores":
            nginx_edits.append((r"^(\s*worker_processes\s+)\d+;", r"\g<1>2;"))
        if mode == "rss":
            nginx_edits.append((r"(worker_connections\s+)\d+;", r"\g<1>16384;"))
        if mode == "tls":
            crt, key, pem = self.cert
            nginx_edits.append(
                (
                    rf"^([ \t]*)(listen[ \t]+{re.escape(HOST)}:{NGINX_PORT})[ \t]*;",
                    rf"\g<1>\g<2> ssl;\n\g<1>ssl_certificate {crt};\n"
                    rf"\g<1>ssl_certificate_key {key};\n"
                    # nginx < 1.23.4 leaves TLSv1.3 out of its default ssl_protocols;
                    # protocols only, the ciphers stay nginx's defaults.
                    r"\g<1>ssl_protocols TLSv1.2 TLSv1.3;",
                )
            )
        if mode == "h2c":
            nginx_edits.append(
                (
                    rf"^([ \t]*listen[ \t]+{re.escape(HOST)}:{NGINX_PORT})[ \t]*;",
                    r"\g<1> http2;",
                )
            )
            # nginx closes a connection after keepalive_requests (default 1000) requests;
            # h2load's timed mode does not reconnect, so its clients would stop.
            nginx_edits.append(
                (r"^([ \t]*)(access_log[ \t]+off;)", r"\g<1>\g<2>\n\g<1>keepalive_requests 100000000;")
            )
        nginx_conf = self.peer_config("nginx.conf", nginx_dir, nginx_edits)

        haproxy_edits = []
        if mode == "allcores":
            haproxy_edits.append((r"^(\s*nbthread\s+)\d+", r"\g<1>2"))
        if mode == "rss":
            # haproxy wants 2 fds per connection up front; with a hard RLIMIT_NOFILE
            # below that it must be told to start anyway (it needs about 10,000 here).
            haproxy_edits.append(
                (r"^(\s*)maxconn\s+\d+", r"\g<1>maxconn 12000\n\g<1>no strict-limits")
            )
        if mode == "tls":
            haproxy_edits.append(
                (
                    rf"^([ \t]*bind[ \t]+{re.escape(HOST)}:{HAPROXY_PORT})[ \t]*$",
                    rf"\g<1> ssl crt {pem}",
                )
            )
        if mode == "h2c":
            haproxy_edits.append(
                (
                    rf"^([ \t]*bind[ \t]+{re.escape(HOST)}:{HAPROXY_PORT})[ \t]*$",
                    r"\g<1> proto h2",
                )
            )
        haproxy_cfg = self.peer_config(
            "haproxy.cfg", os.path.join(self.tmp, f"haproxy-{mode}"), haproxy_edits
        )

        starts = [
            (
                "hookgate",
                HOOKGATE_PORT,
                [
                    BINARY,
                    "--log-level",
                    "warn",
                    "serve",
                    "--config",
                    self.hookgate_config(workers, tls=mode == "tls"),
                ],
            ),
            ("nginx", NGINX_PORT, ["nginx", "-c", nginx_conf, "-p", nginx_dir + "/"]),
            ("haproxy", HAPROXY_PORT, ["haproxy", "-f", haproxy_cfg]),
        ]
        if mode == "tls" and not self.haproxy_tls:
            starts = [s for s in starts if s[0] != "haproxy"]
        for name, port, cmd in starts:
            proc = self.procs.start(
                name, pinned(core, cmd), os.path.join(self.tmp, f"{name}-{mode}.log")
            )
            wait_port(self.procs, name, proc, port)
            if name == "hookgate":
                wait_port(self.procs, name, proc, ADMIN_PORT)
        self.mode = mode

    def stop_proxies(self):
        for name, _ in TARGETS:
            self.procs.stop(name)
        self.mode = None

    def pid(self, name):
        return self.procs.procs[name][0].pid

    # ---------------------------------------------------------------- load

    def cpu_now(self, proxy):
        """CPU seconds so far of the `proxy` process (a name in self.procs; None if it
        is not running) and of the sink, each with its workers, and the proxy's
        involuntary context switches ("preempted")."""
        out = {}
        for key, name in (("proxy", proxy), ("sink", "sink")):
            entry = self.procs.procs.get(name) if name else None
            out[key] = group_cpu_seconds(entry[0].pid) if entry else None
        entry = self.procs.procs.get(proxy) if proxy else None
        out["preempted"] = group_preemptions(entry[0].pid) if entry else None
        return out

    def run_tool(self, tool, name, cmd, during=None, proxy=None):
        """Runs one load generator (`tool`, a name in self.procs) against target `name`
        to completion; returns its output and the run's CPU usage (usage_figures): wall
        seconds, and the CPU seconds of the generator, of the `proxy` process (default:
        the first word of `name`) and of the sink. A hang or a failure is a BenchError.
        `during`: called once the tool has started (the profile's perf record)."""
        log = os.path.join(self.tmp, f"{tool}.out")
        if os.path.exists(log):
            os.unlink(log)
        proxy = proxy or name.split()[0]
        start = self.cpu_now(proxy)
        start_load = children_cpu_seconds()
        start_tcp = tcp_counters()
        t0 = time.monotonic()
        proc = self.procs.start(tool, cmd, log)
        try:
            if during is not None:
                during()
            proc.wait(timeout=self.args.duration + 30)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{tool} did not finish in time: {shlex.join(cmd)}")
        finally:
            self.procs.stop(tool)
        end = self.cpu_now(proxy)
        end_tcp = tcp_counters()
        usage = {
            "wall": time.monotonic() - t0,
            # The generator has been reaped (Processes.stop): its rusage is in.
            "load": children_cpu_seconds() - start_load,
            "tcp": (
                {k: end_tcp[k] - start_tcp[k] for k in end_tcp}
                if start_tcp is not None and end_tcp is not None
                else None
            ),
        }
        for key in ("proxy", "sink", "preempted"):
            both = start[key] is not None and end[key] is not None
            usage[key] = end[key] - start[key] if both else None
        with open(log) as f:
            text = f.read()
        if proc.returncode != 0:
            raise BenchError(f"{tool} failed ({proc.returncode}) against {name}:\n{text}")
        return text, usage

    def interleaved(self, scenario, names, run_one):
        """`--rounds` rounds of run_one(name) for each of `names` in turn (A B C A B C);
        returns {name: [result per round]}."""
        samples = {name: [] for name in names}
        for rnd in range(self.args.rounds):
            progress(f"{scenario}: round {rnd + 1}/{self.args.rounds}")
            for name in names:
                samples[name].append(run_one(name))
                time.sleep(0.3)
        return samples

    def wrk_cmd(self, port, payload, threads, conns, core, scheme="http", path=PATH):
        return pinned(
            core,
            [
                "wrk",
                f"-t{threads}",
                f"-c{conns}",
                f"-d{self.args.duration}s",
                "--latency",
                "-s",
                payload.lua,
                f"{scheme}://{HOST}:{port}{path}",
            ],
        )

    def run_wrk(
        self, name, port, payload, threads, conns, core, scheme="http", path=PATH, proxy=None
    ):
        cmd = self.wrk_cmd(port, payload, threads, conns, core, scheme, path)
        text, usage = self.run_tool("wrk", name, cmd, proxy=proxy)
        r = parse_wrk(text)
        r.update(usage_figures(usage, r["requests"]))
        progress(
            f"  {name:8} {r['rps']:>10,.0f} req/s  p50 {r['p50']:.3f} ms  "
            f"p99 {r['p99']:.3f} ms  non-2xx {r['non2xx']}  socket errors {r['socket']}  "
            f"CPU {fmt(r['cpu_us'], 2)} µs/req, busy {fmt_share(r['busy'])}, "
            f"wrk {fmt_share(r['gen'])}, sink {fmt_share(r['sink_busy'])}"
        )
        return r

    def load(self, scenario, runs, threads, conns, core, scheme="http"):
        """runs: [(target name, port, payload, expected status, path)], interleaved per
        round. Returns {target: medians}."""
        for name, port, payload, expect, path in runs:
            status = probe(port, payload.body, payload.sig, scheme, path)
            if status != expect:
                raise BenchError(
                    f"{scenario}: {name} answered {status} to a probe, expected {expect}"
                )
        by_name = {name: (port, payload, path) for name, port, payload, _, path in runs}
        samples = self.interleaved(
            scenario,
            list(by_name),
            lambda name: self.run_wrk(
                name, *by_name[name][:2], threads, conns, core, scheme, by_name[name][2]
            ),
        )
        for name, port, payload, expect, path in runs:
            status = probe(port, payload.body, payload.sig, scheme, path)
            if status != expect:
                raise BenchError(
                    f"{scenario}: {name} answered {status} after the load, expected {expect}"
                )
        result = {}
        for name, rs in samples.items():
            result[name] = {
                "rps": statistics.median(r["rps"] for r in rs),
                "p50": statistics.median(r["p50"] for r in rs),
                "p99": statistics.median(r["p99"] for r in rs),
                "requests": sum(r["requests"] for r in rs),
                "non2xx": sum(r["non2xx"] for r in rs),
                "socket": sum(r["socket"] for r in rs),
                **{key: median_of(rs, key) for key in USAGE_KEYS},
                # Each round's figures, in run order: round i of every target ran
                # side by side (paired_ratio).
                "rounds": rs,
            }
        return result

    def print_load_table(self, result):
        hap, ngx = result.get("haproxy"), result.get("nginx")
        rows = []
        for name, r in result.items():
            if r["non2xx"] or r["socket"]:
                errors = f"{r['non2xx'] + r['socket']} (non-2xx {r['non2xx']}, socket {r['socket']})"
            else:
                errors = "0"
            rows.append(
                [
                    name,
                    fmt(r["rps"]),
                    fmt(r["p50"], 3),
                    fmt(r["p99"], 3),
                    errors,
                    *(paired_ratio(r, peer, "rps") if peer else "-" for peer in (hap, ngx)),
                    fmt(r["cpu_us"], 2),
                    *(paired_ratio(r, peer, "cpu_us") if peer else "-" for peer in (hap, ngx)),
                    busy_shares(r),
                    fmt(r.get("preempt_s")),
                    segments(r),
                ]
            )
        self.out.table(
            ["target", "req/s", "p50 ms", "p99 ms", "errors", "×haproxy", "×nginx",
             "CPU µs/req", "CPU ×haproxy", "CPU ×nginx", "busy: target / wrk / sink",
             "preempted/s", "TCP segments/req (pure ACKs)"],
            rows,
        )

    def three_way(
        self, scenario, title, payload_name, mode="pinned", scheme="http", targets=TARGETS, notes=()
    ):
        """targets: [(name, port)] or [(name, port, path)] (default path PATH); notes:
        extra report lines between the setup line and the table."""
        self.start_proxies(mode)
        payload = self.payloads[payload_name]
        if mode == "allcores":
            threads, conns, core = 2, 64, None
        else:
            threads, conns, core = 1, 32, LOAD_CORE
        runs = [(t[0], t[1], payload, 200, t[2] if len(t) > 2 else PATH) for t in targets]
        result = self.load(scenario, runs, threads, conns, core, scheme)
        self.results[scenario] = result
        self.out.line(f"### {scenario}: {title}")
        self.out.line()
        self.out.line(
            f"wrk `-t{threads} -c{conns} -d{self.args.duration}s`"
            + (" pinned to core 0" if core is not None else " unpinned")
            + (f" against `{scheme}://`" if scheme != "http" else "")
            + f", body {len(payload.body):,} bytes, median of {self.args.rounds} "
            "interleaved round(s); errors summed over the rounds."
        )
        self.out.line()
        for note in notes:
            self.out.line(note)
        if notes:
            self.out.line()
        self.print_load_table(result)

    # ---------------------------------------------------------------- scenarios

    def sc_keepalive(self):
        self.three_way(
            "keepalive",
            "keep-alive POSTs of the 1682-byte sample event",
            "sample",
            targets=[TARGETS[0], (OPEN_TARGET, HOOKGATE_PORT, OPEN_PATH), *TARGETS[1:]],
            notes=[
                f"`{OPEN_TARGET}` is the same hookgate process on a route with no signature "
                f"(`{OPEN_PATH}`: `verify: {{ none: true }}`, allowlist 127.0.0.1): every "
                "other stage runs, so its row against hookgate's is the verification's cost."
            ],
        )

    def sc_body64k(self):
        self.three_way("body64k", "keep-alive POSTs of a 64 KiB JSON body", "64k")

    def sc_body1m(self):
        self.three_way("body1m", "keep-alive POSTs of a 1 MiB JSON body", "1m")

    def sc_allcores(self):
        self.three_way(
            "allcores",
            "2 workers each, unpinned (sink unchanged: 1 worker on core 0)",
            "sample",
            mode="allcores",
        )

    def sc_forged(self):
        self.start_proxies("pinned")
        forged = self.payloads["forged"]
        # Accepted deliveries run in the same rounds (forged, accepted, forged, …), so
        # that the ratio is taken side by side, as every other one is.
        runs = [
            ("hookgate forged", HOOKGATE_PORT, forged, 406, PATH),
            ("hookgate accepted", HOOKGATE_PORT, self.payloads["sample"], 200, PATH),
        ]
        result = self.load("forged", runs, 1, 32, LOAD_CORE)
        r = result["hookgate forged"]
        accepted = result["hookgate accepted"]
        wrong = r["requests"] - r["non2xx"]
        self.results["forged"] = {"rejects": r, "accepted": accepted}
        self.out.line("### forged: hookgate only, 1682-byte sample with a wrong signature")
        self.out.line()
        self.out.line(
            "Every answer must be 406 `signature_mismatch` (checked with a probe before "
            "and after; wrk counts them all as non-2xx)."
        )
        self.out.line()
        rows = [
            [
                "hookgate (forged → 406)",
                fmt(r["rps"]),
                fmt(r["p50"], 3),
                fmt(r["p99"], 3),
                f"2xx answers {wrong}, socket {r['socket']}",
                paired_ratio(r, accepted, "rps"),
                fmt(r["cpu_us"], 2),
                paired_ratio(accepted, r, "cpu_us"),
                busy_shares(r),
            ],
            [
                "hookgate accepted (the same rounds)",
                fmt(accepted["rps"]),
                fmt(accepted["p50"], 3),
                fmt(accepted["p99"], 3),
                str(accepted["non2xx"] + accepted["socket"]),
                "1.00×",
                fmt(accepted["cpu_us"], 2),
                "1.00×",
                busy_shares(accepted),
            ],
        ]
        self.out.table(
            ["target", "req/s", "p50 ms", "p99 ms", "errors", "×accepted",
             "CPU µs/req", "accepted's CPU ÷ this", "busy: hookgate / wrk / sink"],
            rows,
        )
        self.out.line(
            "accepted's CPU ÷ this: how many forged deliveries hookgate rejects for the CPU "
            "time one accepted delivery costs it. With rejects, wrk alone must keep up "
            "with hookgate on core 0: its busy share near 100% means the rejects/s "
            "figure is bounded by the load generator as much as by hookgate."
        )
        self.out.line()
        if wrong:
            raise BenchError(f"forged: {wrong} forged deliveries were not rejected")

    def sc_tls(self):
        if self.cert is None:
            self.cert = make_cert(os.path.join(self.tmp, "tls"))
        if self.haproxy_tls is None:
            self.haproxy_tls = haproxy_has_tls()
        targets = [t for t in TARGETS if t[0] != "haproxy" or self.haproxy_tls]
        self.start_proxies("tls")
        self.negotiated = {}
        for name, port in targets:
            self.negotiated[name] = negotiated(port)
            progress(f"tls: {name} negotiates {self.negotiated[name]}")
        notes = [
            "Each target terminates TLS on its usual port with the same self-signed ECDSA "
            "P-256 certificate (`openssl req -x509 -newkey ec`, 127.0.0.1/localhost) and "
            "its own default ciphers (nginx: `ssl_protocols TLSv1.2 TLSv1.3` added, as "
            "nginx before 1.23.4 leaves TLSv1.3 out by default); wrk sends no ALPN and speaks HTTP/1.1; "
            "with keep-alive the 32 handshakes are a negligible part of a run. Negotiated "
            "(`openssl s_client`, the OpenSSL client wrk uses):",
            "",
        ]
        for name, _ in targets:
            notes.append(f"- {name}: {self.negotiated[name]}")
        if not self.haproxy_tls:
            notes.append("- haproxy: not measured, this haproxy build has no OpenSSL (`haproxy -vv`)")
        self.three_way(
            "tls",
            "keep-alive POSTs of the 1682-byte sample event over TLS",
            "sample",
            mode="tls",
            scheme="https",
            targets=targets,
            notes=notes,
        )
        # Fresh plain-HTTP processes for whatever runs next.
        self.stop_proxies()

    def run_h2load(self, name, port, payload):
        """One timed h2load run (prior-knowledge h2c, 32 clients, one stream each) on the
        load core; returns req/s, request-time mean and sd (ms), requests, non-2xx."""
        cmd = pinned(
            LOAD_CORE,
            [
                "h2load",
                "-t1",
                "-c32",
                "-m1",
                "--warm-up-time=1",
                f"-D{self.args.duration}",
                "-d",
                payload.body_path,
                "-H",
                "content-type: application/json",
                "-H",
                f"expel-signature-256: {payload.sig}",
                f"http://{HOST}:{port}{PATH}",
            ],
        )
        text, usage = self.run_tool("h2load", name, cmd)
        r = parse_h2load(text)
        # h2load's requests leave out its warm-up second; the proxy's CPU does not.
        r.update(usage_figures(usage, None))
        if r["protocol"] != "h2c":
            raise BenchError(f"h2c: {name} negotiated {r['protocol']!r}, not h2c")
        progress(
            f"  {name:8} {r['rps']:>10,.0f} req/s  mean {r['mean']:.3f} ms  "
            f"sd {r['sd']:.3f} ms  non-2xx {r['non2xx']}  failed {r['failed']}"
        )
        return r

    def sc_h2c(self):
        if shutil.which("h2load") is None:
            self.out.line("### h2c: not run")
            self.out.line()
            self.out.line("h2load is not installed (`apt-get install -y nghttp2-client`).")
            self.out.line()
            return
        self.start_proxies("h2c")
        payload = self.payloads["sample"]
        ports = dict(TARGETS)
        samples = self.interleaved(
            "h2c", list(ports), lambda name: self.run_h2load(name, ports[name], payload)
        )
        result = {}
        for name, rs in samples.items():
            result[name] = {
                "rps": statistics.median(r["rps"] for r in rs),
                "mean": statistics.median(r["mean"] for r in rs),
                "sd": statistics.median(r["sd"] for r in rs),
                "requests": sum(r["requests"] for r in rs),
                "non2xx": sum(r["non2xx"] for r in rs),
                "failed": sum(r["failed"] for r in rs),
                **{key: median_of(rs, key) for key in USAGE_KEYS},
                "rounds": rs,
            }
        self.results["h2c"] = result
        self.out.line("### h2c: the 1682-byte sample event over cleartext HTTP/2")
        self.out.line()
        self.out.line(
            f"h2load `-t1 -c32 -m1 --warm-up-time=1 -D{self.args.duration}` pinned to core 0, "
            "prior knowledge (no upgrade), one stream at a time per connection; each proxy "
            "speaks HTTP/1.1 to the sink; nginx gets `keepalive_requests 100000000` (its "
            "default 1000 ends each connection, and h2load's timed mode does not reconnect). "
            "h2load reports no percentiles: the latency columns "
            f"are its per-request mean and standard deviation. Median of {self.args.rounds} "
            "interleaved round(s); errors summed over the rounds."
        )
        self.out.line()
        rows = []
        for name, r in result.items():
            errors = r["non2xx"] + r["failed"]
            rows.append(
                [
                    name,
                    fmt(r["rps"]),
                    fmt(r["mean"], 3),
                    fmt(r["sd"], 3),
                    "0" if not errors else f"{errors} (non-2xx {r['non2xx']}, failed {r['failed']})",
                    *(paired_ratio(r, result[peer], "rps") for peer in ("haproxy", "nginx")),
                    busy_shares(r),
                ]
            )
        self.out.table(
            ["target", "req/s", "mean ms", "sd ms", "errors", "×haproxy", "×nginx",
             "busy: target / h2load / sink"],
            rows,
        )
        # Fresh HTTP/1.1 processes for whatever runs next.
        self.stop_proxies()

    # ---------------------------------------------------------------- queued

    def start_queued_hookgate(self, synchronous):
        """A fresh hookgate on a fresh store (the files of the last run deleted), pinned
        as in `pinned` mode, with the bench route and its queued twin."""
        self.procs.stop("hookgate")
        db = self.queue_db(synchronous)
        os.makedirs(os.path.dirname(db), exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(db + suffix)
            except FileNotFoundError:
                pass
        cmd = [
            BINARY,
            "--log-level",
            "warn",
            "serve",
            "--config",
            self.hookgate_config(1, store=synchronous),
        ]
        proc = self.procs.start(
            "hookgate", pinned(PROXY_CORE, cmd), os.path.join(self.tmp, "hookgate-queued.log")
        )
        wait_port(self.procs, "hookgate", proc, HOOKGATE_PORT)
        wait_port(self.procs, "hookgate", proc, ADMIN_PORT)
        return db

    def queue_counts(self, db):
        """{"pending", "done", "dead"} of the queued route: from the admin API's
        `GET /queue/stats`, or, if the binary answers 404 there, from the store file
        opened read-only."""
        if self.queue_source != "sqlite":
            try:
                with urllib.request.urlopen(
                    f"http://{HOST}:{ADMIN_PORT}/queue/stats", timeout=10
                ) as resp:
                    data = json.loads(resp.read())
                self.queue_source = "admin"
                counts = {"pending": 0, "done": 0, "dead": 0}
                for r in data.get("routes", []):
                    if r.get("route") == QUEUED_ROUTE:
                        counts = {k: int(r.get(k) or 0) for k in counts}
                return counts
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise BenchError(f"GET /queue/stats answered {e.code}: {e.read()[:200]!r}")
                self.queue_source = "sqlite"
                progress("queued: GET /queue/stats is 404 here; reading the store file instead")
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise BenchError(f"GET /queue/stats failed: {e}")
        uri = "file:" + urllib.request.pathname2url(db) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=10)
            try:
                rows = conn.execute(
                    "SELECT state, count(*) FROM deliveries WHERE route = ? GROUP BY state",
                    (QUEUED_ROUTE,),
                ).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as e:
            raise BenchError(f"cannot read the store {db}: {e}")
        by_state = dict(rows)
        # The store's states: 0 pending, 1 done (delivered), 2 dead.
        return {
            "pending": by_state.get(0, 0),
            "done": by_state.get(1, 0),
            "dead": by_state.get(2, 0),
        }

    def queued_run(self, mode, payload):
        """One wrk run of a `queued` mode on a fresh process and store; the sink is
        stopped for the run if the mode says so, and started again after it."""
        label, path, synchronous, sink_up = mode
        db = self.start_queued_hookgate(synchronous)
        if not sink_up:
            self.procs.stop("sink")
        try:
            status = probe(HOOKGATE_PORT, payload.body, payload.sig, path=path)
            if status != 200:
                raise BenchError(f"queued: {label}: a probe got {status}, expected 200")
            r = self.run_wrk(
                label, HOOKGATE_PORT, payload, 1, 32, LOAD_CORE, path=path, proxy="hookgate"
            )
            if path == QUEUED_PATH:
                # Right as wrk stops: how much was delivered while accepting, and the
                # backlog it left (the probe included).
                c = self.queue_counts(db)
                r["delivered"], r["backlog"], r["dead"] = c["done"], c["pending"], c["dead"]
                r["drain"] = r["drain_rate"] = None
                if sink_up:
                    # Delivery alone: how fast the backlog falls once nothing is accepted.
                    t0 = time.monotonic()
                    while c["pending"] and time.monotonic() - t0 < QUEUED_DRAIN_LIMIT:
                        time.sleep(0.25)
                        c = self.queue_counts(db)
                    elapsed = time.monotonic() - t0
                    r["drain"] = elapsed if not c["pending"] else None
                    r["left"] = c["pending"]
                    r["drain_rate"] = (r["backlog"] - c["pending"]) / elapsed if elapsed else None
                tail = ""
                if sink_up and r["drain"] is not None:
                    tail = f", drained in {r['drain']:.1f} s"
                elif sink_up:
                    tail = f", {r['left']:,} left after {QUEUED_DRAIN_LIMIT:.0f} s"
                if r["drain_rate"] is not None:
                    tail += f" ({r['drain_rate']:,.0f} deliveries/s)"
                progress(
                    f"  {'':8} delivered {r['delivered']:,} during the run, backlog "
                    f"{r['backlog']:,} at its end{tail}"
                )
            status = probe(HOOKGATE_PORT, payload.body, payload.sig, path=path)
            if status != 200:
                raise BenchError(f"queued: {label}: a probe after the load got {status}, expected 200")
            return r
        finally:
            if not sink_up:
                self.start_sink()

    def sc_queued(self):
        # hookgate only (nginx and haproxy have no queue), one fresh process and store
        # per run so that no backlog of an earlier run is delivered during the next.
        self.stop_proxies()
        self.mode = "queued"
        payload = self.payloads["sample"]
        modes = [
            ("sync, sink up", PATH, "full", True),
            ("queued full, sink up", QUEUED_PATH, "full", True),
            ("queued full, sink down", QUEUED_PATH, "full", False),
            ("queued normal, sink up", QUEUED_PATH, "normal", True),
            ("queued normal, sink down", QUEUED_PATH, "normal", False),
        ]
        samples = {m[0]: [] for m in modes}
        try:
            for rnd in range(self.args.rounds):
                progress(f"queued: round {rnd + 1}/{self.args.rounds}")
                for mode in modes:
                    samples[mode[0]].append(self.queued_run(mode, payload))
                    time.sleep(0.3)
        finally:
            self.stop_proxies()

        result = {}
        for label, rs in samples.items():
            result[label] = {
                "rps": median_of(rs, "rps"),
                "p50": median_of(rs, "p50"),
                "p99": median_of(rs, "p99"),
                "requests": sum(r["requests"] for r in rs),
                "non2xx": sum(r["non2xx"] for r in rs),
                "socket": sum(r["socket"] for r in rs),
                "delivered": median_of(rs, "delivered"),
                "backlog": median_of(rs, "backlog"),
                "dead": sum(r.get("dead") or 0 for r in rs),
                "drain": median_of(rs, "drain"),
                "drain_rate": median_of(rs, "drain_rate"),
                "undrained": sum(1 for r in rs if r.get("left")),
                **{key: median_of(rs, key) for key in USAGE_KEYS},
            }
        self.results["queued"] = result
        sync_rps = result["sync, sink up"]["rps"]
        rows = []
        for label, path, _, sink_up in modes:
            r = result[label]
            if r["non2xx"] or r["socket"]:
                errors = f"{r['non2xx'] + r['socket']} (non-2xx {r['non2xx']}, socket {r['socket']})"
            else:
                errors = "0"
            if path != QUEUED_PATH:
                delivered = backlog = drain = rate = "-"
            else:
                delivered = fmt(r["delivered"])
                backlog = fmt(r["backlog"])
                rate = fmt(r["drain_rate"]) if sink_up else "- (sink down)"
                if not sink_up:
                    drain = "- (sink down)"
                elif r["undrained"]:
                    drain = f"> {QUEUED_DRAIN_LIMIT:.0f} in {r['undrained']} of {len(samples[label])} run(s)"
                else:
                    drain = fmt(r["drain"], 1)
            rows.append(
                [
                    label,
                    fmt(r["rps"]),
                    fmt(r["p50"], 3),
                    fmt(r["p99"], 3),
                    errors,
                    fmt_ratio(ratio(r["rps"], sync_rps)),
                    delivered,
                    backlog,
                    drain,
                    rate,
                    fmt(r["cpu_us"], 2),
                    busy_shares(r),
                ]
            )
        source = {
            "admin": "the admin API's `GET /queue/stats`",
            "sqlite": "the store file opened read-only, as this binary answers 404 to `GET /queue/stats`",
        }.get(self.queue_source, "-")
        self.out.line("### queued: hookgate only, sync route against its `delivery: queued` twin")
        self.out.line()
        self.out.line(
            f"wrk `-t1 -c32 -d{self.args.duration}s` pinned to core 0, hookgate (1 worker) on "
            f"core 1, body {len(payload.body):,} bytes, median of {self.args.rounds} interleaved "
            "round(s); errors summed over the rounds. Each run gets a fresh hookgate process "
            f"and an empty store. The queued route `{QUEUED_PATH}` is the bench route with "
            f"`delivery: queued` and `concurrency: {QUEUED_CONCURRENCY}` (default retry policy); "
            "the store is `store: { path: <tmp>/bench.db }` (synchronous FULL, the default: "
            "an fsync per group commit) or `synchronous: normal` (WAL without the per-commit "
            "fsync: survives a crash of the process, may lose the last commits on power loss). "
            "A queued 200 is answered only after the commit that holds the delivery."
        )
        self.out.line()
        self.out.line("Rows:")
        self.out.line()
        self.out.line(
            "- `sync, sink up`: the bench route as in `keepalive`: the sender's 200 is the "
            "sink's, forwarded; the reference for ×sync."
        )
        self.out.line(
            "- `queued <level>, sink up`: sustained accept + deliver: wrk's req/s are accepted "
            "(stored) deliveries while the dispatcher delivers them to the sink at the same time; "
            "\"delivered\" is how many the sink had acknowledged when wrk stopped, \"backlog\" how "
            "many were still pending then (how far delivery fell behind accepting), \"drained "
            f"after\" how long the backlog then took to reach zero (at most {QUEUED_DRAIN_LIMIT:.0f} s waited), "
            "\"deliveries/s after\" the rate it fell at meanwhile (delivery alone, nothing accepted)."
        )
        self.out.line(
            "- `queued <level>, sink down`: the sink process is stopped for the run (started "
            "again after it): accept throughput and latency only; every accepted delivery "
            "stays pending (the dispatcher's refused attempts are retried with backoff)."
        )
        self.out.line(
            f"- The counts are medians over the rounds, read from {source} (delivered and "
            "backlog right when wrk stopped; each includes the one probe request sent before wrk)."
        )
        self.out.line()
        self.out.table(
            [
                "mode",
                "req/s",
                "p50 ms",
                "p99 ms",
                "errors",
                "×sync",
                "delivered by the end",
                "backlog at the end",
                "drained after s",
                "deliveries/s after",
                "CPU µs/req",
                "busy: hookgate / wrk / sink",
            ],
            rows,
        )
        self.out.line(
            "CPU µs/req: hookgate's CPU time over the run (its dispatcher and store "
            "included) divided by the requests wrk counted; busy: share of one core."
        )
        self.out.line()
        dead = sum(r["dead"] for r in result.values())
        if dead:
            self.out.line(f"Note: {dead} deliveries ended dead (summed over the runs).")
            self.out.line()

    def sc_rss(self):
        # Fresh processes, so that "idle" is right after start.
        self.stop_proxies()
        self.start_proxies("rss")
        payload = self.payloads["sample"]
        rows = []
        for name, port in TARGETS:
            pgid = self.pid(name)
            time.sleep(0.5)
            idle = group_rss_kb(pgid)
            progress(f"rss: {name} idle {kb_to_mb(idle):.1f} MB; opening {RSS_CONNECTIONS} connections")
            # The client runs where wrk runs: core 0.
            affinity = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {int(LOAD_CORE)})
            try:
                conns, elapsed = open_idle_connections(
                    port, RSS_CONNECTIONS, request_bytes(port, payload.body, payload.sig)
                )
            finally:
                os.sched_setaffinity(0, affinity)
            loaded = group_rss_kb(pgid)
            answered = sum(1 for c in conns if c.done and c.status == 200)
            alive = sum(
                1 for c in conns if c.done and c.status == 200 and still_open(c.sock)
            )
            failures = {}
            for c in conns:
                if c.failed:
                    failures[c.failed] = failures.get(c.failed, 0) + 1
                elif c.done and c.status != 200:
                    key = f"status {c.status}"
                    failures[key] = failures.get(key, 0) + 1
            for c in conns:
                c.sock.close()
            progress(
                f"rss: {name} {kb_to_mb(loaded):.1f} MB with {alive} open in {elapsed:.1f}s"
                + (f"; failures {failures}" if failures else "")
            )
            self.rss[name] = {
                "idle": kb_to_mb(idle),
                "loaded": kb_to_mb(loaded),
                "alive": alive,
                "answered": answered,
                "elapsed": elapsed,
                "failures": failures,
            }
            rows.append(
                [
                    name,
                    f"{kb_to_mb(idle):.1f}",
                    f"{kb_to_mb(loaded):.1f}",
                    f"{alive:,} / {RSS_CONNECTIONS:,}",
                    f"{elapsed:.1f}",
                    ", ".join(f"{k}: {v}" for k, v in failures.items()) or "-",
                ]
            )
            time.sleep(1.0)
        # The idle connections are gone; later scenarios start from fresh processes.
        self.stop_proxies()
        self.out.line("### rss: resident memory, idle and with 10,000 idle keep-alive connections")
        self.out.line()
        self.out.line(
            "VmRSS summed over the process group (nginx: master + worker), 1 MB = 10^6 bytes. "
            "Idle: 0.5 s after start. Loaded: right after the last of 10,000 connections "
            f"(at most {RSS_WINDOW} unanswered at a time; each sent one signed 1682-byte POST and read the "
            "whole answer) was answered, all held open. For this scenario only, the peers' "
            "connection caps are raised (nginx worker_connections 16384, haproxy maxconn "
            "12000 with `no strict-limits`)."
        )
        self.out.line()
        self.out.table(
            ["target", "idle MB", "10k conns MB", "open and answered 200", "open time s", "failures"],
            rows,
        )

    def criterion_times(self):
        """criterion's warm-up and measurement times for the scenarios that run it."""
        return ["--warm-up-time", "1", "--measurement-time", str(max(2, self.args.duration))]

    def sc_crypto(self):
        """Each hash hookgate's HMAC schemes use, over 1 MiB: `openssl speed -evp` against
        the criterion throughput bench of the same hash (core 1)."""
        self.stop_proxies()
        openssl = {}
        for h in CRYPTO_HASHES:
            progress(f"crypto: openssl speed -evp {h} (core 1)")
            cmd = pinned(
                PROXY_CORE,
                ["openssl", "speed", "-evp", h, "-bytes", "1048576", "-seconds", "2"],
            )
            status, out = run_cmd(cmd, timeout=60)
            if status != 0:
                raise BenchError(f"openssl speed failed ({status}):\n{out}")
            openssl[h] = parse_openssl_speed(out, h)

        out = cargo_bench("crypto", "verify", ["throughput/", *self.criterion_times()])
        ours = {h: parse_criterion_thrpt(out, f"throughput/hmac_{h}_1mib") for h in CRYPTO_HASHES}
        self.crypto = {"openssl": openssl["sha256"][0], "hmac": ours["sha256"][0]}
        self.out.line("### crypto: each HMAC hash over 1 MiB blocks, on core 1")
        self.out.line()
        self.out.line(
            "`openssl speed -evp <hash> -bytes 1048576 -seconds 2` (the bare hash) against "
            "`cargo bench --bench verify -- throughput/` (criterion median of the whole "
            "HMAC verification: the hash of the body plus the outer hash and the comparison)."
        )
        self.out.line()
        rows = []
        for h in CRYPTO_HASHES:
            o, c = openssl[h], ours[h]
            rows.append(
                [
                    h.upper().replace("SHA", "SHA-"),
                    f"{o[0]:.3f} ({o[1]})",
                    f"{c[0]:.3f} ({c[1]})",
                    f"{c[0] / o[0]:.2f}×",
                ]
            )
        self.out.table(
            ["hash", "openssl GB/s (as printed)", "hookgate HMAC GB/s (as printed)", "hookgate / openssl"],
            rows,
        )

    # ---------------------------------------------------------------- profile

    def perf_run(self, label, name, port, payload, expect, slug, out_dir):
        """One profiled run: wrk against `name` while `perf record` samples its process
        in the middle of the run; returns the row for the report."""
        status = probe(port, payload.body, payload.sig)
        if status != expect:
            raise BenchError(f"profile: {label} answered {status} to a probe, expected {expect}")
        pid = self.pid(name)  # a process group's leader: nginx's workers are in it
        window = max(1, self.args.duration - 2)
        data = os.path.join(self.tmp, f"perf-{slug}.data")
        sampled = {}

        def record():
            time.sleep(1)
            before = group_cpu_ticks(pid)
            started = time.monotonic()
            status, out = run_cmd(
                ["perf", "record", "-F", str(PERF_FREQ), "--call-graph", f"dwarf,{PERF_STACK}",
                 "-p", ",".join(str(p) for p, _ in group_members(pid)), "-o", data,
                 "--", "sleep", str(window)],
                timeout=window + 60,
            )
            if status != 0:
                raise BenchError(f"perf record failed:\n{out[-2000:]}")
            after = group_cpu_ticks(pid)
            sampled["elapsed"] = time.monotonic() - started
            sampled["ticks"] = (after[0] - before[0], after[1] - before[1])

        progress(f"profile: {label}")
        cmd = self.wrk_cmd(port, payload, 1, 32, LOAD_CORE)
        r = parse_wrk(self.run_tool("wrk", label, cmd, during=record)[0])
        script = subprocess.Popen(
            ["perf", "script", "-i", data], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        collapse = subprocess.run(
            ["inferno-collapse-perf", "--all"], stdin=script.stdout, capture_output=True
        )
        script.stdout.close()
        script.wait()
        os.unlink(data)
        if collapse.returncode != 0 or script.returncode != 0:
            raise BenchError(f"perf script | inferno-collapse-perf failed:\n{collapse.stderr[-2000:]}")
        folded = collapse.stdout.decode("utf-8", "replace")
        svg = os.path.join(out_dir, f"{slug}.svg")
        with open(svg, "wb") as f:
            fg = subprocess.run(
                ["inferno-flamegraph", "--title", f"{label}: wrk -t1 -c32, core 1",
                 "--minwidth", "0.2"],
                input=collapse.stdout, stdout=f, stderr=subprocess.PIPE,
            )
        if fg.returncode != 0:
            raise BenchError(f"inferno-flamegraph failed:\n{fg.stderr.decode()[-2000:]}")
        hz = os.sysconf("SC_CLK_TCK")
        user, system = (t / hz / sampled["elapsed"] for t in sampled["ticks"])
        return {
            "label": label,
            "rps": r["rps"],
            "user": user,
            "system": system,
            "shares": leaf_shares(folded),
            "svg": svg,
        }

    def sc_stages(self):
        """What each pipeline stage costs on its own (criterion, `benches/pipeline.rs`,
        core 1), beside what a whole request costs core 1 in the keepalive scenario, and
        the heap allocations per request (`benches/allocs.rs`)."""
        self.stop_proxies()
        cargo_bench("stages", "pipeline", self.criterion_times())
        rows, on_path = [], 0.0
        for label, bench_id, minus, taken in STAGES:
            ns = criterion_median_ns(bench_id)
            if minus:
                ns -= criterion_median_ns(minus)
            if taken:
                on_path += ns
            rows.append([label, f"`{bench_id}`" + (f" − `{minus}`" if minus else ""),
                         f"{ns:,.1f}", "yes" if taken else "-"])
        allocs_out = cargo_bench("stages", "allocs", [])
        allocs, (idle_bytes, idle_sizes) = parse_allocs(allocs_out), parse_idle_heap(allocs_out)

        self.out.line("### stages: what each pipeline stage costs, and allocations per request")
        self.out.line()
        self.out.line(
            f"`cargo bench --bench pipeline -- {shlex.join(self.criterion_times())}` on core 1: "
            "each stage through the library's own functions, in the order the server runs "
            "them (criterion's median per call, from `target/criterion/*/new/estimates.json`). "
            "The head parse is measured on a fresh copy of the head, as each request has its "
            "own buffer; the copy's own cost is subtracted. \"bench request\" marks the "
            "stages the load scenarios' signed request goes through (the expel route: no "
            "allowlist, no rate limit, an untrusted peer)."
        )
        self.out.line()
        self.out.table(["stage", "criterion bench", "ns", "bench request"], rows)
        whole = self.results.get("keepalive", {}).get("hookgate")
        if whole:
            per_request = 1e9 / whole["rps"]
            self.out.line(
                f"The bench request's stages sum to {on_path:,.0f} ns. In the keepalive "
                f"scenario core 1, which the load keeps busy (`profile`: busy), gave each request {per_request:,.0f} ns "
                f"(1 s / {whole['rps']:,.0f} req/s): the stages are "
                f"{on_path / per_request:.0%} of it. The rest is the two socket exchanges "
                "(client and upstream: the kernel's TCP work is about two-thirds of the "
                "core, see `profile`), the runtime, the body read and the upstream "
                "answer's parse."
            )
        else:
            self.out.line(
                f"The bench request's stages sum to {on_path:,.0f} ns (keepalive not run: "
                "no whole-request figure to set them against)."
            )
        self.out.line()
        self.out.line(
            "`cargo bench --bench allocs` (release, core 1): heap allocations per request "
            "through an in-process gateway (one worker) between a keep-alive sender and a "
            "real upstream on 127.0.0.1, neither of which allocates per request; "
            "bench/README.md (\"Allocations per request\") says what each one is."
        )
        self.out.line()
        self.out.table(
            ["request", "allocations", "bytes"],
            [[label, count, f"{int(size):,}"] for label, count, size in allocs],
        )
        held = ", ".join(f"{n:g} × {size:,} B" for n, size in idle_sizes)
        self.out.line(
            f"Between its requests a keep-alive connection holds {idle_bytes:,} bytes of heap "
            f"(the same bench, 200 connections held open after one request each): {held}. "
            "The `rss` scenario's figure is higher: it also holds what the allocator kept "
            "from the requests in flight while the connections were opened."
        )

    def sc_profile(self):
        missing = [t for t in PROFILE_TOOLS if shutil.which(t) is None]
        self.out.line("### profile: where one worker's core goes (perf, flamegraphs)")
        self.out.line()
        if missing:
            self.out.line(f"Skipped: {', '.join(missing)} not installed (`{PROFILE_HINT}`).")
            self.out.line()
            return
        self.start_proxies("pinned")
        out_dir = FLAMEGRAPHS if self.args.write else FLAMEGRAPHS_SCRATCH
        os.makedirs(out_dir, exist_ok=True)
        runs = [
            ("hookgate, signed", "hookgate", HOOKGATE_PORT, self.payloads["sample"], 200, "hookgate-keepalive"),
            ("hookgate, forged", "hookgate", HOOKGATE_PORT, self.payloads["forged"], 406, "hookgate-forged"),
            ("haproxy", "haproxy", HAPROXY_PORT, self.payloads["sample"], 200, "haproxy-keepalive"),
            ("nginx", "nginx", NGINX_PORT, self.payloads["sample"], 200, "nginx-keepalive"),
        ]
        rows = [self.perf_run(*run, out_dir) for run in runs]
        window = max(1, self.args.duration - 2)
        self.out.line(
            f"Each proxy (one worker, core 1) under wrk `-t1 -c32 -d{self.args.duration}s` "
            f"(core 0) with the 1682-byte sample; `perf record -F {PERF_FREQ} --call-graph "
            f"dwarf,{PERF_STACK} -p PIDS` (every process of the proxy: nginx's master and worker) for {window} s from the run's second second. Busy: "
            "the process's user and system CPU over that window (/proc), as a share of one "
            "core. The other columns split its samples by the function at the top of the "
            "stack: the kernel's, SHA-256's, the allocator's (mimalloc, malloc), libc's "
            "(memcpy, the send/recv wrappers), and the rest of the process's own code. One "
            "run each, not interleaved: shares, not rates, are the point here."
        )
        self.out.line()
        table = []
        for row in rows:
            sh = row["shares"]
            table.append(
                [
                    row["label"],
                    fmt(row["rps"]),
                    f"{100 * (row['user'] + row['system']):.0f}% "
                    f"({100 * row['user']:.0f} user, {100 * row['system']:.0f} system)",
                    *(f"{100 * sh[k]:.1f}%" for k in ("kernel", "sha256", "alloc", "libc", "own")),
                    f"`{os.path.relpath(row['svg'], REPO)}`",
                ]
            )
        self.out.table(
            ["process", "req/s", "busy", "kernel", "SHA-256", "allocator", "libc", "own code",
             "flamegraph"],
            table,
        )
        self.out.line("Top functions by samples at the top of the stack (`[k]`: kernel):")
        self.out.line()
        top = [row["shares"]["top"] for row in rows]
        self.out.table(
            [row["label"] for row in rows],
            [
                [f"{100 * t[i][1]:.1f}% `{t[i][0]}`" if i < len(t) else "" for t in top]
                for i in range(PROFILE_TOP)
            ],
        )

    # ---------------------------------------------------------------- targets

    def summary(self):
        """One table of every side-by-side scenario run: each target's req/s, p50 and p99
        and each as a ratio to haproxy's and nginx's from the same rounds."""
        scenarios = [s for s in SUMMARY_SCENARIOS if s in self.results]
        if not scenarios:
            return
        rows = []
        for s in scenarios:
            result = self.results[s]
            hap, ngx = result.get("haproxy"), result.get("nginx")
            # h2load gives a mean, no percentiles.
            p50, p99 = ("mean", None) if s == "h2c" else ("p50", "p99")
            for name, r in result.items():
                row = [s, name, fmt(r["rps"])]
                row += [paired_ratio(r, peer, "rps") if peer else "-" for peer in (hap, ngx)]
                for key in (p50, p99):
                    if key is None:
                        row += ["-", "-", "-"]
                        continue
                    row.append(fmt(r[key], 3) + (" (mean)" if key == "mean" else ""))
                    row += [paired_ratio(r, peer, key) if peer else "-" for peer in (hap, ngx)]
                row.append(fmt(r.get("cpu_us"), 2))
                row += [paired_ratio(r, peer, "cpu_us") if peer else "-" for peer in (hap, ngx)]
                rows.append(row)
        self.out.line("## summary")
        self.out.line()
        self.out.line(
            "Every side-by-side scenario in one table (the sections below give each one's "
            "setup). Each ratio is the median of the target's figure over haproxy's or "
            f"nginx's taken round by round in the same {self.args.rounds} interleaved "
            "round(s) (round i of each ran side by side), and in brackets the lowest and "
            "highest of those ratios, which is how far this machine's noise moves it. The "
            "figures themselves are medians over the rounds. Above 1.0× is better for req/s, below 1.0× "
            "for latency and CPU per request. h2c: h2load reports a mean latency and no "
            "percentiles, and counts no requests in its warm-up second, so no CPU per request."
        )
        self.out.line()
        self.out.table(
            ["scenario", "target", "req/s", "req/s ×haproxy", "req/s ×nginx",
             "p50 ms", "p50 ×haproxy", "p50 ×nginx", "p99 ms", "p99 ×haproxy", "p99 ×nginx",
             "CPU µs/req", "CPU ×haproxy", "CPU ×nginx"],
            rows,
        )
        self.out.line(CPU_NOTE)
        self.out.line()
        f = self.results.get("forged")
        if f:
            self.out.line(f"forged: {forged_detail(f)}.")
            self.out.line()

    def targets(self):
        lines = []

        def check(label, ok, detail):
            if ok is None:
                lines.append(f"- n/a  {label}: {detail}")
            else:
                lines.append(f"- {'PASS' if ok else 'FAIL'} {label}: {detail}")

        def rate_against(label, target, peer, bound):
            """A req/s target against a peer: the paired ratio, and the CPU beside it."""
            x = paired(target, peer, "rps")
            check(
                label,
                None if x is None else x >= bound,
                f"{paired_ratio(target, peer, 'rps')}{at_the_bound(x, bound)} "
                f"({target['rps']:,.0f} vs {peer['rps']:,.0f}); "
                f"CPU per request {paired_ratio(target, peer, 'cpu_us')}",
            )

        load_scenarios = [s for s in ("keepalive", "body64k", "body1m", "allcores") if s in self.results]
        if not load_scenarios:
            check("req/s and p99 against the peers", None, "no load scenario run")
        for s in load_scenarios:
            r = self.results[s]
            hg, hap, ngx = r["hookgate"], r["haproxy"], r["nginx"]
            rate_against(f"{s}: req/s ≥ 1.0× haproxy", hg, hap, 1.0)
            rate_against(f"{s}: req/s ≥ 1.15× nginx", hg, ngx, 1.15)
            x = paired(hg, hap, "p99")
            check(
                f"{s}: p99 ≤ haproxy's p99",
                None if x is None else x <= 1.0,
                f"{hg['p99']:.3f} ms vs {hap['p99']:.3f} ms, {paired_ratio(hg, hap, 'p99')}"
                f"{at_the_bound(x, 1.0)}{preemptions(hg, hap)}",
            )
        t = self.results.get("tls")
        if t:
            rate_against("TLS req/s ≥ 1.0× nginx with TLS", t["hookgate"], t["nginx"], 1.0)
        else:
            check("TLS req/s ≥ 1.0× nginx with TLS", None, "tls not run")
        f = self.results.get("forged")
        if f:
            x = paired(f["rejects"], f["accepted"], "rps")
            check(
                "forged rejects/s ≥ 2× accepted req/s",
                None if x is None else x >= 2.0,
                forged_detail(f) + at_the_bound(x, 2.0),
            )
        else:
            check("forged rejects/s ≥ 2× accepted req/s", None, "forged not run")
        hg = self.rss.get("hookgate")
        if hg:
            check("RSS idle < 30 MB", hg["idle"] < 30, f"{hg['idle']:.1f} MB")
            full = hg["alive"] == RSS_CONNECTIONS
            check(
                "RSS with 10,000 idle connections < 150 MB",
                hg["loaded"] < 150 and full,
                f"{hg['loaded']:.1f} MB with {hg['alive']:,} of {RSS_CONNECTIONS:,} open and answered 200",
            )
        else:
            check("RSS idle < 30 MB", None, "rss not run")
            check("RSS with 10,000 idle connections < 150 MB", None, "rss not run")
        if self.crypto:
            check("HMAC-SHA256 ≥ 1.5 GB/s", self.crypto["hmac"] >= 1.5, f"{self.crypto['hmac']:.3f} GB/s")
        else:
            check("HMAC-SHA256 ≥ 1.5 GB/s", None, "crypto not run")
        self.out.line("### targets")
        self.out.line()
        self.out.line(
            "Each verdict is on the median of the round-by-round ratios (round i of both "
            "ran side by side); the bracket is their range."
        )
        self.out.line()
        for line in lines:
            self.out.line(line)
        self.out.line()

    def rounds(self):
        width, rows = rounds_rows(self.results)
        if not rows:
            return
        self.out.line("### rounds: every round's figures")
        self.out.line()
        self.out.line(
            "The figures behind the medians and paired ratios above, in run order: round i "
            "of every target in a scenario ran side by side; the last figure is the target's "
            "CPU µs per request. h2c's latency is h2load's mean, and it has no CPU per "
            "request (see the summary)."
        )
        self.out.line()
        self.out.table(
            ["scenario", "target"] + [f"round {i + 1}" for i in range(width)], rows
        )


# --------------------------------------------------------------------------- header


def first_line(text):
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "?"


def machine_header(report, argv):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    _, nginx_v = run_cmd(["nginx", "-v"], 10)
    _, haproxy_v = run_cmd(["haproxy", "-v"], 10)
    _, wrk_v = run_cmd(["wrk", "-v"], 10)
    _, commit = run_cmd(["git", "rev-parse", "--short=12", "HEAD"], 10, cwd=REPO)
    dirty, _ = run_cmd(["git", "diff", "--quiet", "HEAD", "--", "src", "Cargo.toml", "Cargo.lock"], 10, cwd=REPO)
    commit = first_line(commit) + (" (with uncommitted changes in src/ or Cargo.*)" if dirty == 1 else "")
    report.line("# hookgate load benchmark")
    report.line()
    report.line(f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')}")
    report.line(f"- machine: {os.cpu_count()} cores (nproc), {cpu}, Linux {platform.release()}")
    report.line(f"- nginx: {first_line(nginx_v)}")
    report.line(f"- haproxy: {first_line(haproxy_v)}")
    report.line(f"- wrk: {first_line(wrk_v)}")
    report.line(f"- hookgate: commit {commit}")
    report.line(f"- command: `{shlex.join(['python3'] + argv)}`")
    report.line(
        "- setup: sink (`hookgate sink --workers 1`) and wrk on core 0; the proxy under "
        "test on core 1, one worker; targets interleaved A B C per round; hookgate "
        "verifies the Expel signature (HMAC-SHA256), nginx and haproxy only proxy"
    )
    report.line()


# ----------------------------------------------------------------------------- main


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        return want, None
    except (ValueError, OSError):
        limit = hard if hard != resource.RLIM_INFINITY else want
        limit = min(limit, want)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        return limit, f"could not raise RLIMIT_NOFILE to {want} (hard limit {hard}); using {limit}"


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="hookgate vs nginx vs haproxy load benchmark (see the module docstring)"
    )
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help="comma list of scenarios (default: all): " + ",".join(ALL_SCENARIOS),
    )
    p.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    p.add_argument("--write", action="store_true", help="also write bench/RESULTS.md")
    p.add_argument(
        "--peers",
        default=os.path.join(os.path.dirname(REPO), "shared", "bench"),
        help="directory with nginx.conf, haproxy.cfg, payload.json (default ../shared/bench)",
    )
    args = p.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in ALL_SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(ALL_SCENARIOS)}")
    if args.duration < 1 or args.rounds < 1:
        p.error("--duration and --rounds must be at least 1")
    # Run in the canonical order whatever order was given.
    args.scenarios = [s for s in ALL_SCENARIOS if s in scenarios]
    return args


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
    args = parse_args(argv)
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(f"missing tools: {', '.join(missing)}", file=sys.stderr)
        print(INSTALL_HINT)
        return 2
    for f in ("nginx.conf", "haproxy.cfg", "payload.json"):
        if not os.path.isfile(os.path.join(args.peers, f)):
            print(f"{args.peers}/{f} not found (set --peers DIR)", file=sys.stderr)
            return 2

    _, warning = raise_nofile()
    if warning:
        progress(f"warning: {warning}")

    if not args.no_build:
        progress("cargo build --release")
        r = subprocess.run(["cargo", "build", "--release"], cwd=REPO)
        if r.returncode != 0:
            print("cargo build --release failed", file=sys.stderr)
            return 1
    if not os.access(BINARY, os.X_OK):
        print(f"{BINARY} not found; build it or drop --no-build", file=sys.stderr)
        return 1

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    report = Report()
    tmp = tempfile.mkdtemp(prefix="hookgate-bench-")
    bench = Bench(args, tmp, report)
    ok = False
    try:
        machine_header(report, sys.argv)
        if warning:
            report.line(f"Note: {warning}.")
            report.line()
        bench.check_ports_free()
        bench.prepare_payloads()
        load = {
            "keepalive", "body64k", "body1m", "forged", "allcores", "tls", "h2c", "queued", "rss",
            "profile",
        }
        if load & set(args.scenarios):
            bench.start_sink()
        results_at = len(report.lines)
        report.line("## results")
        report.line()
        for s in args.scenarios:
            getattr(bench, f"sc_{s}")()
        summary_at = len(report.lines)
        bench.summary()
        # Printed last; in the file, first after the header.
        report.move(summary_at, len(report.lines), results_at)
        bench.targets()
        bench.rounds()
        ok = True
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        bench.procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
    if not ok:
        return 1
    if args.write:
        with open(RESULTS, "w") as f:
            f.write(report.text())
        progress(f"wrote {os.path.relpath(RESULTS, os.getcwd())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
