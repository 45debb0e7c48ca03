"""producer/bench/cpu.py: CPU time from the processes' own accounting, descendants included."""

from __future__ import annotations

import subprocess
import sys
import time

from producer.bench import cpu

# a parent that starts a child burning `burn` CPU seconds (its own clock, so a loaded machine only
# makes it slower), then both sleep until killed
_TREE = """
import subprocess, sys, time
burn = float(sys.argv[1])
child = subprocess.Popen([sys.executable, "-c",
    "import time\\nwhile time.process_time() < %r: pass\\nprint('burnt', flush=True)\\ntime.sleep(60)" % burn],
    stdout=subprocess.PIPE, text=True)
print(child.stdout.readline().strip(), flush=True)
time.sleep(60)
"""


def test_parse_stat_counts_fields_after_a_command_name_with_spaces_and_parentheses():
    fields = ["S", "41"] + ["0"] * 9 + ["250", "50", "30", "20"] + ["0"] * 30
    stat = cpu.parse_stat("1234 (odd) name)) " + " ".join(fields))
    assert stat.pid == 1234 and stat.ppid == 41
    assert stat.self_s == 300 / cpu.TICKS and stat.reaped_children_s == 50 / cpu.TICKS


def test_a_tree_sums_its_descendants_and_nobody_else():
    s = {pid: cpu.ProcStat(pid, ppid, own, reaped) for pid, ppid, own, reaped in
         [(10, 1, 1.0, 0.5), (11, 10, 2.0, 0.0), (12, 11, 4.0, 0.0), (20, 1, 8.0, 0.0)]}
    assert cpu.tree_cpu_s(10, s) == 7.5
    assert cpu.tree_cpu_s(11, s) == 6.0
    assert cpu.tree_cpu_s(99, s) == 0.0  # gone


def test_a_live_grandchild_burning_cpu_counts_for_its_root():
    root = subprocess.Popen([sys.executable, "-c", _TREE, "0.4"], stdout=subprocess.PIPE, text=True)
    try:
        assert root.stdout.readline().strip() == "burnt"
        meter = cpu.CpuMeter({"tree": [root.pid], "nobody": []})
        sample = meter.sample()
        assert sample["tree"] >= 0.4 and sample["nobody"] == 0.0
        assert cpu.process_cpu_s(root.pid) >= 0.4
        time.sleep(0.2)  # both sleep: the next delta is (next to) nothing
        assert meter.since(sample)["tree"] < 0.1
    finally:
        root.kill()
        root.wait()


def test_per_scan_ms():
    assert cpu.per_scan_ms({"workers": 2.0, "servers": 0.5}, 1000) == {"workers": 2.0, "servers": 0.5}
    assert cpu.per_scan_ms({"workers": 2.0}, 0) == {}
