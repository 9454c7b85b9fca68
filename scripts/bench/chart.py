#!/usr/bin/env python3
"""Draws benchmarks/throughput.png from benchmarks/results.json (written by bench.py): Mpps per flow count for
testpmd macswap and every Tula case (median bars, every run as a dot), the ratio to testpmd, and Tula's own cycles
per packet (its cycles minus testpmd's, same run) against issue 14's targets. Usage: chart.py RESULTS.json OUT.png"""

import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import human_flows, summarize  # noqa: E402

CASES = [("testpmd", "testpmd macswap", "#7f7f7f"), ("l2", "Tula L2 (MAC rewrite)", "#1f77b4"),
         ("l3", "Tula L3 (IP-in-IP)", "#ff7f0e"), ("l2-v6", "Tula L2, IPv6", "#2ca02c"),
         ("l3-v6", "Tula L3, IPv6 (6in6)", "#d62728"), ("l2-prefix", "Tula L2, prefix VIP", "#9467bd")]


def main(results_path, out_path):
    with open(results_path) as f:
        results = json.load(f)
    env = results["environment"]
    rows, scaling = summarize(results)
    flows = sorted({r["flows"] for r in rows})
    by = {(r["case"], r["flows"]): r for r in rows}

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [3, 2, 2]})
    width = 0.8 / len(CASES)
    for i, (case, label, color) in enumerate(CASES):
        xs, ys = [], []
        for j, f in enumerate(flows):
            r = by.get((case, f))
            if not r:
                continue
            x = j + (i - (len(CASES) - 1) / 2) * width
            xs.append(x)
            ys.append(r["mpps"])
            ax1.scatter([x] * len(r["runs"]), r["runs"], s=9, color="black", zorder=3)
            ax1.annotate(f"{r['mpps']:.1f}", (x, r["mpps"]), ha="center", va="bottom", fontsize=8,
                         xytext=(0, 2), textcoords="offset points")
        ax1.bar(xs, ys, width, label=label, color=color)
    ax1.set_xticks(range(len(flows)), [f"{human_flows(f)} flows" for f in flows])
    ax1.set_ylabel("Mpps, one worker core (median; dots: runs)")
    ax1.set_title("Throughput on one net_pcap infinite_rx port")
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_ylim(0, max(max(r["runs"]) for r in rows) * 1.12)

    def case_bars(ax, key, fmt, targets=False):
        """One bar per Tula case and flow count of the row field `key`, labelled with `fmt`; red ticks at the own-cycle
        targets (`targets`)."""
        for i, (case, label, color) in enumerate(CASES[1:]):
            xs, ys = [], []
            for j, f in enumerate(flows):
                r = by.get((case, f))
                if not r or r.get(key) is None:
                    continue
                x = j + (i - (len(CASES) - 2) / 2) * width
                xs.append(x)
                ys.append(r[key])
                ax.annotate(fmt.format(r[key]), (x, r[key]), ha="center", va="bottom", fontsize=8,
                            xytext=(0, 2), textcoords="offset points")
                if targets and r.get("target"):
                    ax.hlines(r["target"][0], x - width / 2, x + width / 2, colors="red", linewidth=2, zorder=3)
            ax.bar(xs, ys, width, label=label, color=color)

    case_bars(ax2, "ratio", "{:.2f}")
    ax2.axhline(1.0, color="#7f7f7f", linewidth=0.8, linestyle="--")
    ax2.set_xticks(range(len(flows)), [human_flows(f) for f in flows])
    ax2.set_ylim(0, 1.15)
    ax2.set_ylabel("ratio to testpmd macswap")
    ax2.set_title("Tula / testpmd (same flows, same run)")
    ax2.legend(loc="upper right", fontsize=8)

    # Own cycles per packet: what Tula's work costs above testpmd's (driver and minimal loop), the issue-14 measure.
    case_bars(ax3, "own_cycles", "{:.0f}", targets=True)
    ax3.plot([], [], color="red", linewidth=2, label="target")
    ax3.axhline(0, color="#7f7f7f", linewidth=0.8)
    ax3.set_xticks(range(len(flows)), [human_flows(f) for f in flows])
    ax3.set_ylabel("own cycles per packet (median)")
    ax3.set_title("Tula's cycles/packet − testpmd's (same run)")
    ax3.legend(loc="upper left", fontsize=8)
    own = [r["own_cycles"] for r in rows if r.get("own_cycles") is not None]
    if own:
        ax3.set_ylim(min(0, min(own) * 1.15), max(own) * 1.18)

    modes = ", ".join(sorted({r["memory"] for r in results["runs"]}))
    load = statistics.median(r["other_load_cores"] for r in results["runs"])
    fig.suptitle(f"{env['cpu']} ({env['cpus']} CPUs), DPDK {env['dpdk'].split(' ')[0]}, {modes}, "
                 f"{env['reps']}x{env['seconds']:g} s per case, median other load {load:.2f} cores — {env['date']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
