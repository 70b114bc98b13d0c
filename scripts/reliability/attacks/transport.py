"""The HTTP transport: metric labels, slow and idle connections, descriptors, held-back bodies,
request-sized work on the async workers, and shutdown with work in flight."""

import json
import random
import resource
import select
import signal
import socket
import string
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from .harness import Server, attack, openai_error

HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 3


def raise_own_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))


def connect(server, timeout=5):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def closed_by_server(sock):
    """True when the server has answered or closed the connection (FIN, reset, or bytes of a
    response waiting); False while it still waits for us."""
    poller = select.poll()  # not select(): descriptors here go past FD_SETSIZE
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        sock.recv(1)
    except OSError:
        pass  # reset
    return True  # b"" (FIN), a reset, or the start of a response


# 3. Every made-up method name used to add a series to /metrics, forever.
@attack("transport_metrics_method_labels", budget_s=60)
def metrics_method_labels(server, short):
    count = 400 if short else 5000
    rng = random.Random(24)
    session = requests.Session()
    for i in range(count):
        name = "".join(rng.choice(string.ascii_uppercase) for _ in range(12)) + str(i)
        r = session.request(name, f"{server.url}/health", timeout=10)
        assert r.status_code == 405, f"{name} /health: {r.status_code}"
    r = server.get("/metrics", timeout=10)
    assert r.status_code == 200, r.status_code
    series = [line for line in r.text.splitlines()
              if line.startswith("tealight:http_requests_total{")]
    methods = {line.split('method="', 1)[1].split('"', 1)[0] for line in series}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT",
                       "TRACE", "other"}, f"{len(methods)} method labels, e.g. {sorted(methods)[:5]}"
    assert "other" in methods, methods
    assert len(series) < 50, f"{len(series)} request-counter series"
    assert len(r.content) < 64 << 10, f"/metrics is {len(r.content)} bytes"


# 5. Slowloris: heads sent a byte at a time were never timed out.
@attack("transport_slowloris", flags=("--header-read-timeout", str(HEADER_TIMEOUT_S)),
        budget_s=60)
def slowloris(server, short):
    count = 200 if short else 1000
    raise_own_fd_limit(count + 256)
    socks = [connect(server) for _ in range(count)]
    for s in socks:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    # Dribble a header byte per connection every 0.25 s, well past the header timeout.
    started = time.monotonic()
    open_now = list(socks)
    while time.monotonic() - started < HEADER_TIMEOUT_S + 3 and open_now:
        still = []
        for s in open_now:
            try:
                s.send(b"X")
                still.append(s)
            except OSError:
                pass
        open_now = still
        time.sleep(0.25)
    time.sleep(0.5)
    left = sum(not closed_by_server(s) for s in socks)
    for s in socks:
        s.close()
    assert left == 0, (f"{left} of {count} slow-header connections still open "
                       f"{HEADER_TIMEOUT_S + 3} s after connecting (header timeout {HEADER_TIMEOUT_S} s)")


def lower_fd_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


# 5. With 1,024 descriptors, 1,100 connections made accept() fail and /health time out.
@attack("transport_fd_exhaustion", own_server=True, preexec=lower_fd_limit, budget_s=60)
def fd_exhaustion(server, short):
    count = 1100
    raise_own_fd_limit(count + 256)
    socks = []
    for _ in range(count):
        try:
            socks.append(connect(server, timeout=2))
        except OSError:
            break  # the backlog is full: the server is not accepting (what the fix prevents)
    # A partial head on each: only the connection cap frees slots before the timeouts.
    for s in socks:
        try:
            s.sendall(b"GET /health HTTP/1.1\r\n")
        except OSError:
            pass
    worst, failures = 0.0, []
    for _ in range(10 if short else 40):
        t = time.monotonic()
        try:
            r = requests.get(f"{server.url}/health", timeout=3)
            if r.status_code != 200:
                failures.append(r.status_code)
        except requests.RequestException as e:
            failures.append(type(e).__name__)
        worst = max(worst, time.monotonic() - t)
        time.sleep(0.1)
    for s in socks:
        s.close()
    assert not failures and worst < 1.0, (
        f"/health with {len(socks)} connections open under RLIMIT_NOFILE 1024: "
        f"failures {failures[:3]}, worst {worst:.2f} s")


# 5. Bodies held back by one byte pinned their buffered bytes forever.
@attack("transport_held_back_body",
        flags=("--body-read-timeout", str(BODY_TIMEOUT_S), "--max-buffered-body-bytes", "64MiB"),
        budget_s=60, max_rss_growth_mib=200)
def held_back_body(server, short):
    count, size = (12, 16 << 20) if short else (40, 31 << 20)
    body = b"x" * size
    socks = [connect(server, timeout=BODY_TIMEOUT_S + 10) for _ in range(count)]

    def send_all_but_one(s):
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode()
        try:
            s.sendall(head)
            s.sendall(memoryview(body)[:-1])
        except OSError:
            pass  # the server answered and closed before taking the rest

    started = time.monotonic()
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(send_all_but_one, socks))
    time.sleep(max(0.0, BODY_TIMEOUT_S + 2 - (time.monotonic() - started)))
    left = sum(not closed_by_server(s) for s in socks)
    for s in socks:
        s.close()
    assert left == 0, (f"{left} of {count} connections holding back a body's last byte still "
                       f"waiting {BODY_TIMEOUT_S + 2} s on (body timeout {BODY_TIMEOUT_S} s)")


# 7. /detokenize decoded millions of ids on the async workers.
# Bodies wait within the body budget (256 MiB by default) and their ids are parsed before the
# count is checked: growth up to the budget plus the parsed ids is expected.
@attack("transport_detokenize_flood", budget_s=60, max_rss_growth_mib=384)
def detokenize_flood(server, short):
    ids = [random.Random(7).randrange(1000, 50000) for _ in range(64)]
    ok = server.post("/detokenize", {"tokens": ids}, timeout=30)
    assert ok.status_code == 200 and ok.json()["prompt"], ok.text[:200]
    count, length = (4, 400_000) if short else (8, 3_000_000)
    huge = json.dumps({"tokens": (ids * (length // len(ids) + 1))[:length]}).encode()

    def detokenize(_):
        return requests.post(f"{server.url}/detokenize", data=huge, timeout=60,
                             headers={"Content-Type": "application/json"})

    with ThreadPoolExecutor(count) as pool:
        replies = list(pool.map(detokenize, range(count)))
    for r in replies:
        openai_error(r, 400, mentions="--max-model-len")


# 10. SIGTERM with /tokenize work in flight: connections closed with no response, and the
# process outlived --shutdown-timeout.
@attack("transport_sigterm_tokenize", budget_s=60)
def sigterm_tokenize(server, short):
    timeout_s = 3
    own = Server(server.binary, ("--shutdown-timeout", str(timeout_s), "--max-model-len", "32768"),
                 log=server.log)
    try:
        # About 1.3M tokens: seconds of tokenizing each, more than the pool clears in time.
        prompt = " ".join(str(i) for i in range(200_000))
        count = 6 if short else 16
        replies = [None] * count

        def tokenize(i):
            try:
                r = requests.post(f"{own.url}/tokenize", json={"prompt": prompt}, timeout=30)
                replies[i] = r.status_code
            except requests.RequestException as e:
                replies[i] = type(e).__name__

        threads = [threading.Thread(target=tokenize, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        signalled = time.monotonic()
        own.proc.send_signal(signal.SIGTERM)
        try:
            own.proc.wait(timeout=timeout_s + 10)
        except Exception:
            own.proc.kill()
            own.proc.wait()
        exited = time.monotonic() - signalled
        for t in threads:
            t.join(timeout=30)
        print(f"     replies {replies}, exited {exited:.2f} s after SIGTERM", flush=True)
        unanswered = [r for r in replies if r not in (200, 503)]
        assert not unanswered, f"requests in flight at SIGTERM got {replies}"
        assert exited <= timeout_s + 0.5, (
            f"exited {exited:.1f} s after SIGTERM (--shutdown-timeout {timeout_s})")
    finally:
        own.stop()
