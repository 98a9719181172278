#!/usr/bin/env python3
"""Prints the median time per operation of every criterion benchmark under a directory
(default target/criterion) as a Markdown table, in the order given by the benches' ids."""
import json
import os
import sys


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.0f} ns"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
    only = set(sys.argv[2:])
    rows = []
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        if only and bench["group_id"] not in only:
            continue
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        m = est["median"]
        ci = m["confidence_interval"]
        rows.append((bench["full_id"], m["point_estimate"], ci["lower_bound"], ci["upper_bound"]))
    print("| benchmark | median per op | 95% interval |")
    print("|---|---:|---|")
    for full_id, med, lo, hi in sorted(rows):
        print(f"| `{full_id}` | {fmt(med)} | {fmt(lo)} - {fmt(hi)} |")


if __name__ == "__main__":
    main()
