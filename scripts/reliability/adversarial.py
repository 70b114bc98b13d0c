"""The adversarial suite: every attack in `attacks/` against a live `tealight serve`.

Each attack runs with a `/health` prober beside it; it passes when its own assertions hold, the
process is alive after it, `/health` never took longer than the attack's bound, and resident
memory grew no more than it allows. Attacks with the same flags share a server; those that
must wreck one (`own_server`) get their own.

    python scripts/reliability/adversarial.py --binary target/release/tealight        # full sizes
    python scripts/reliability/adversarial.py --binary target/debug/tealight --short  # the test suite's run
    python scripts/reliability/adversarial.py --binary OLD --only metrics_method_labels --json out.json
"""

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attacks import MODULES  # noqa: E402
from attacks import harness  # noqa: E402


def load_attacks(only):
    for name in MODULES:
        try:
            importlib.import_module(f"attacks.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"attacks.{name}":
                raise
    chosen = [a for a in harness.REGISTRY if not only or a.name in only]
    missing = set(only or ()) - {a.name for a in chosen}
    if missing:
        raise SystemExit(f"no such attack: {', '.join(sorted(missing))}")
    return chosen


def run_one(attack, server, short):
    probe = harness.HealthProbe(server)
    rss_before = server.rss_mib()
    probe.start()
    started = time.monotonic()
    problems = []
    try:
        attack.fn(server, short)
    except AssertionError as e:
        problems.append(f"assertion: {e}")
    except Exception as e:  # a client-side failure is the attack's failure too
        problems.append(f"{type(e).__name__}: {e}")
        traceback.print_exc()
    elapsed = time.monotonic() - started
    probe.finish()
    growth = max(probe.peak_rss, server.rss_mib()) - rss_before
    if not server.alive():
        problems.append(f"server died (exit {server.proc.returncode})")
    if probe.worst > attack.max_health_s:
        problems.append(f"/health took {probe.worst:.2f} s (bound {attack.max_health_s} s)")
    if probe.failures:
        problems.append(f"/health failed {len(probe.failures)}x: {probe.failures[:3]}")
    if growth > attack.max_rss_growth_mib:
        problems.append(f"RSS grew {growth:.0f} MiB (bound {attack.max_rss_growth_mib})")
    if elapsed > attack.budget_s:
        problems.append(f"took {elapsed:.1f} s (budget {attack.budget_s} s)")
    return {"name": attack.name, "ok": not problems, "problems": problems,
            "health_worst_s": round(probe.worst, 3), "rss_growth_mib": round(growth, 1),
            "seconds": round(elapsed, 1)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--short", action="store_true", help="the bounded sizes the test suite runs")
    p.add_argument("--only", nargs="*", help="attack names")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--log", help="server output goes here (default: a temp file)")
    args = p.parse_args()
    attacks = load_attacks(args.only)
    log = open(args.log, "ab") if args.log else tempfile.NamedTemporaryFile(
        prefix="tealight-adversarial-", suffix=".log", delete=False)
    print(f"server log: {log.name}", flush=True)
    results, shared = [], {}
    try:
        for attack in attacks:
            key = (attack.flags, tuple(sorted(attack.env.items())))
            server = None if attack.own_server else shared.get(key)
            if server is not None and not server.alive():
                server = None
            try:
                if server is None:
                    server = harness.Server(args.binary, attack.flags, attack.env,
                                            attack.preexec, log)
            except RuntimeError as e:
                results.append({"name": attack.name, "ok": False,
                                "problems": [f"start-up: {e}"]})
                continue
            if not attack.own_server:
                shared[key] = server
            result = run_one(attack, server, args.short)
            results.append(result)
            mark = "PASS" if result["ok"] else "FAIL"
            print(f"{mark} {attack.name}: /health worst {result['health_worst_s']} s, "
                  f"RSS +{result['rss_growth_mib']} MiB, {result['seconds']} s", flush=True)
            for problem in result["problems"]:
                print(f"     {problem}", flush=True)
            if attack.own_server:
                server.stop()
    finally:
        for server in shared.values():
            server.stop()
    if args.json:
        harness.dump(results, args.json)
    passed = sum(r["ok"] for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
