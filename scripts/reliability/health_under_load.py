"""How long `/health` and `/metrics` take while huge prompts arrive during a streaming load.

Starts `--binary` on the tiny model, holds `--streams` streaming chat requests, sends
`--big` chat requests of `--big-mib` MiB each, and probes `/health` and `/metrics` every
100 ms (5 s timeout) from before the big prompts until they are all answered.

    python scripts/reliability/health_under_load.py --binary /path/to/old/tealight
    python scripts/reliability/health_under_load.py --binary target/debug/tealight
"""

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server as serve  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--streams", type=int, default=96)
    p.add_argument("--big", type=int, default=3)
    p.add_argument("--big-mib", type=float, default=24)
    args = p.parse_args()
    port = serve.free_port()
    base = f"http://127.0.0.1:{port}"
    server = serve.start(args.binary, port, ["--kv-cache-memory", "512MiB", "--disable-log-requests"],
                         None)
    stop = threading.Event()

    def streamer():
        s = requests.Session()
        while not stop.is_set():
            body = {"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 64,
                    "ignore_eos": True, "stream": True}
            try:
                with s.post(f"{base}/v1/chat/completions", json=body, stream=True, timeout=120) as r:
                    for _ in r.iter_lines():
                        if stop.is_set():
                            break
            except requests.RequestException:
                pass

    streamers = [threading.Thread(target=streamer, daemon=True) for _ in range(args.streams)]
    for t in streamers:
        t.start()
    time.sleep(5)
    results = {"/health": [], "/metrics": []}

    def prober():
        while not stop.is_set():
            for path in results:
                t = time.monotonic()
                try:
                    ok = requests.get(f"{base}{path}", timeout=5).status_code == 200
                    results[path].append((time.monotonic() - t, ok))
                except requests.RequestException:
                    results[path].append((None, False))
            stop.wait(0.1)

    probe = threading.Thread(target=prober, daemon=True)
    probe.start()
    time.sleep(2)
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit " * 1
    text = (words * int(args.big_mib * 2**20 / len(words) + 1))[: int(args.big_mib * 2**20)]
    payload = json.dumps({"messages": [{"role": "user", "content": text}], "max_tokens": 1})
    big_results = []

    def big():
        t = time.monotonic()
        try:
            r = requests.post(f"{base}/v1/chat/completions", data=payload,
                              headers={"Content-Type": "application/json"}, timeout=600)
            big_results.append((r.status_code, time.monotonic() - t, r.text[:160]))
        except requests.RequestException as e:
            big_results.append((None, time.monotonic() - t, str(e)[:160]))

    bigs = [threading.Thread(target=big) for _ in range(args.big)]
    for t in bigs:
        t.start()
    for t in bigs:
        t.join()
    time.sleep(2)
    stop.set()
    probe.join()
    server.send_signal(signal.SIGKILL)
    server.wait()
    for path, samples in results.items():
        times = [t for t, _ in samples if t is not None]
        timeouts = sum(1 for t, _ in samples if t is None)
        print(f"{path}: {len(samples)} probes, worst {max(times) if times else float('nan'):.3f} s, "
              f"median {sorted(times)[len(times) // 2] if times else float('nan'):.3f} s, "
              f"{timeouts} timeouts (5 s)")
    for status, took, body in big_results:
        print(f"big prompt: {status} after {took:.1f} s: {body}")


if __name__ == "__main__":
    main()
