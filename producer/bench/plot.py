"""Latency against throughput (open loop), with the drain and limit rates as vertical lines."""

from __future__ import annotations

from pathlib import Path


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = result["results"]
    fig, ax = plt.subplots(figsize=(8, 5))
    steps = res.get("open_loop") if isinstance(res.get("open_loop"), list) else []
    steps = [s for s in steps if s.get("p50_ms") is not None]
    if steps:
        x = [s["achieved_per_s"] for s in steps]
        for q, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
            ax.plot(x, [s[f"{q}_ms"] for s in steps], style, label=f"tenderscan open loop {q}")
    for name, color in (("work_limit", "black"), ("tenderscan_drain", "tab:green"),
                        ("naive_prefork", "tab:red"), ("naive_solo", "tab:orange")):
        if name in res and res[name].get("scans_per_s"):
            ax.axvline(res[name]["scans_per_s"], color=color, linestyle="-.", alpha=0.6,
                       label=f"{name} {res[name]['scans_per_s']}/s")
    ax.set_xlabel("throughput (scans/s)")
    ax.set_ylabel("submit -> verdict latency (ms)")
    ax.set_yscale("log")
    cond = result.get("conditions", {})
    ax.set_title(f"tenderscan bench: {cond.get('cpus')} CPUs, cuda={cond.get('cuda')}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
