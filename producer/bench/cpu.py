"""CPU time of processes from their own accounting (Linux /proc), so the benchmark can report CPU per
scan and not only scans per second: on a noisy shared machine a wall-clock rate moves with the
neighbours' load, the CPU a scan costs does not (much).

    process_cpu_s(pid)        user + system seconds of one process and all its descendants: the live
                              ones (found by walking /proc for their parent ids) plus the reaped ones
                              (the kernel's cutime + cstime of each parent); 0.0 for a pid that is gone
    CpuMeter(groups)          named groups of root pids ("workers", "api", "servers"); `sample()`
                              reads every group at once, `since(before)` gives seconds per group

Every figure is user + system time in seconds, read from /proc/<pid>/stat fields 14-17 in clock ticks
(SC_CLK_TCK, 100 per second on Linux: a 10 ms resolution, so take deltas over many scans).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the meter needs."""

    pid: int
    ppid: int
    self_s: float  # utime + stime of the process itself (all its threads)
    reaped_children_s: float  # cutime + cstime: children it waited for, and theirs


def parse_stat(text: str) -> ProcStat:
    """/proc/<pid>/stat -> ProcStat. The command name (field 2) may hold spaces and parentheses, so
    the fields are counted from its last ')'."""
    pid = int(text[: text.index(" ")])
    rest = text[text.rindex(")") + 2:].split()  # rest[0] is field 3 (state)
    utime, stime, cutime, cstime = (int(v) for v in rest[11:15])  # fields 14..17
    return ProcStat(pid, int(rest[1]), (utime + stime) / TICKS, (cutime + cstime) / TICKS)


def _read(pid: int, proc: Path) -> ProcStat | None:
    try:
        return parse_stat((proc / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):  # gone, or a half-written entry of a dying process
        return None


def all_stats(proc: Path = PROC) -> dict[int, ProcStat]:
    """Every process's stat, by pid (one pass over /proc)."""
    out = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            stat = _read(int(entry.name), proc)
            if stat is not None:
                out[stat.pid] = stat
    return out


def tree_cpu_s(root: int, stats: Mapping[int, ProcStat]) -> float:
    """CPU seconds of `root` and its descendants in one snapshot of /proc."""
    children: dict[int, list[int]] = {}
    for s in stats.values():
        children.setdefault(s.ppid, []).append(s.pid)
    total, todo = 0.0, [root]
    while todo:
        s = stats.get(todo.pop())
        if s is None:
            continue
        total += s.self_s + s.reaped_children_s
        todo.extend(children.get(s.pid, ()))
    return total


def process_cpu_s(pid: int, proc: Path = PROC) -> float:
    return tree_cpu_s(pid, all_stats(proc))


@dataclass
class CpuMeter:
    """Named groups of root pids, each counted with its descendants."""

    groups: dict[str, list[int]]

    def sample(self, proc: Path = PROC) -> dict[str, float]:
        stats = all_stats(proc)
        return {name: sum(tree_cpu_s(pid, stats) for pid in pids) for name, pids in self.groups.items()}

    def since(self, before: Mapping[str, float], proc: Path = PROC) -> dict[str, float]:
        now = self.sample(proc)
        return {name: round(now[name] - before.get(name, 0.0), 3) for name in now}


def per_scan_ms(cpu_s: Mapping[str, float], scans: int) -> dict[str, float]:
    """Seconds per group over `scans` -> milliseconds per scan (empty when no scan was counted)."""
    if scans <= 0:
        return {}
    return {name: round(1000 * s / scans, 3) for name, s in cpu_s.items()}


def pids_of(services: Iterable) -> list[int]:
    """The root pids of producer.dev Services that are still running."""
    return [svc.proc.pid for svc in services if svc is not None and svc.alive()]
