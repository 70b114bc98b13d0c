"""Starting and stopping a `tealight serve` process for the reliability scripts."""

import os
import signal
import socket
import subprocess
import time

import requests


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, port, flags, log, timeout=120, env=None, preexec=None):
    """`binary serve` on 127.0.0.1:`port` with `flags`, output to `log` (None: discarded),
    `env` added to the environment and `preexec` run in the child before it starts (e.g. to
    lower a resource limit); returns once /health answers 200."""
    cmd = [binary, "serve", "--host", "127.0.0.1", "--port", str(port), *flags]
    out = log if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, **env} if env else None, preexec_fn=preexec)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("server never became healthy")
        time.sleep(0.05)


def stop(proc, timeout=60):
    """SIGTERM (a graceful drain), then SIGKILL if it does not exit in time."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
