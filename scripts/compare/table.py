#!/usr/bin/env python3
"""The comparison table: one column per engine, one row per metric, and ratios of tealight to
the others. Reads the `tealight bench --result-file` JSONs of each server and hf_generate.py's
JSON; prints Markdown.

    python table.py --dir RESULTS [--machine machine.txt] [--command "..."]

RESULTS holds `<engine>-c<N>.json` for each server engine and `transformers.json`.
"""

import argparse
import json
import os

SERVERS = [("tealight", "tealight f32"), ("llamacpp-f32", "llama.cpp f32"), ("llamacpp-f16", "llama.cpp f16")]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def server_metrics(results_dir, name, levels):
    """Metrics of one server from its bench results, or None when it did not run."""
    runs = {c: load(os.path.join(results_dir, f"{name}-c{c}.json")) for c in levels}
    single = runs.get(levels[0])
    if not single:
        return None
    m = {
        "decode": 1000.0 / single["mean_tpot_ms"] if single["mean_tpot_ms"] else None,
        "ttft": single["mean_ttft_ms"],
        "failed": sum(r["failed"] for r in runs.values() if r),
    }
    for c, r in runs.items():
        m[f"tput{c}"] = r["output_throughput"] if r and r["completed"] else None
    return m


def hf_metrics(results_dir):
    r = load(os.path.join(results_dir, "transformers.json"))
    if not r:
        return None
    m = {"decode": r["decode_tok_s"], "ttft": r["ttft_ms"], "failed": 0}
    for level in r["levels"]:
        m[f"tput{level['concurrency']}"] = level["output_throughput"]
    return m


def fmt(v, digits=1):
    return "—" if v is None else f"{v:.{digits}f}"


def ratio(a, b, lower_is_better=False):
    if a is None or b is None or a == 0 or b == 0:
        return "—"
    return f"{(b / a if lower_is_better else a / b):.2f}×"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--levels", default="1,4,16")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    columns = [(label, server_metrics(args.dir, name, levels)) for name, label in SERVERS]
    columns.insert(1, ("transformers f32", hf_metrics(args.dir)))
    rows = [("single-stream decode (tok/s)", "decode", False), ("TTFT, one request (ms)", "ttft", True)]
    rows += [(f"output throughput, concurrency {c} (tok/s)", f"tput{c}", False) for c in levels]

    ours = columns[0][1]
    others = [(label, m) for label, m in columns[1:]]
    header = ["metric"] + [label for label, _ in columns] + [f"tealight ÷ {label}" for label, _ in others]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for title, key, lower in rows:
        cells = [title]
        for _, m in columns:
            cells.append(fmt(m.get(key) if m else None, 0 if key == "ttft" else 1))
        for _, m in others:
            a = ours.get(key) if ours else None
            b = m.get(key) if m else None
            cells.append(ratio(a, b, lower))
        print("| " + " | ".join(cells) + " |")
    failed = {label: m["failed"] for label, m in columns if m and m["failed"]}
    if failed:
        print(f"\nFailed requests: {failed}")
    print("\nRatios above 1× favour tealight (for TTFT: the other's time ÷ tealight's).")


if __name__ == "__main__":
    main()
