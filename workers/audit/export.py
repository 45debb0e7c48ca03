"""What auditors take away: `pull` (records to JSONL / CSV / Parquet, resumable) and `report`.

Resuming: a pull appends each matching row to `OUT.part` and each fetched scan id to `OUT.seen` as it
goes; a rerun with the same OUT skips the scan ids already seen (no second GET) and appends the rest.
Only when every key is done is OUT written (JSONL, CSV, or Parquet through DuckDB) and the two work
files removed. A torn last line (killed mid-write) is dropped on resume and fetched again.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from workers.audit import manifests, signing
from workers.core.storage import ObjectStore

# Flat columns of CSV / Parquet rows (JSONL rows add `record`: the exact signed bytes, as a string).
COLUMNS = {
    "dt": "VARCHAR", "tenant": "VARCHAR", "scan_id": "VARCHAR", "store_id": "VARCHAR", "terminal_id": "VARCHAR",
    "decision": "VARCHAR", "reason": "VARCHAR", "confidence": "DOUBLE", "p_counterfeit": "DOUBLE",
    "denomination": "VARCHAR", "model_name": "VARCHAR", "model_version": "VARCHAR", "submitted": "VARCHAR",
    "completed": "VARCHAR", "attempt": "BIGINT", "record_sha256": "VARCHAR", "key_id": "VARCHAR",
    "signature": "VARCHAR", "s3_key": "VARCHAR",
}
FORMATS = ("jsonl", "csv", "parquet")
SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def to_row(key: str, data: bytes, metadata: dict[str, str]) -> dict:
    v = json.loads(data)
    model = v.get("model") or {}
    return {
        "dt": v["timestamps"]["submitted"][:10], "tenant": v["tenant"], "scan_id": v["scan_id"],
        "store_id": v["store_id"], "terminal_id": v["terminal_id"], "decision": v["decision"],
        "reason": v.get("reason"), "confidence": v.get("confidence"), "p_counterfeit": v.get("p_counterfeit"),
        "denomination": v.get("denomination"), "model_name": model.get("name"), "model_version": model.get("version"),
        "submitted": v["timestamps"]["submitted"], "completed": v["timestamps"].get("completed"),
        "attempt": v.get("attempt"), "record_sha256": signing.sha256_hex(data),
        "key_id": metadata.get(signing.KEY_ID_META), "signature": metadata.get(signing.SIGNATURE_META),
        "s3_key": key, "record": data.decode(),
    }


def _matches(row: dict, stores: set[str] | None, decisions: set[str] | None) -> bool:
    return (not stores or row["store_id"] in stores) and (not decisions or row["decision"] in decisions)


def list_keys(objects: ObjectStore, tenant: str | None, start: str, end: str) -> list[str]:
    return [k for day in manifests.days(start, end) for k in manifests.day_keys(objects, day, tenant)]


def iter_rows(objects: ObjectStore, keys: list[str], stores: set[str] | None = None,
              decisions: set[str] | None = None, done: Callable[[str], None] | None = None) -> Iterator[dict]:
    """Rows of the matching records; `done(key)` runs after the consumer has taken the key's row."""
    for key, data, meta in manifests.fetch(objects, keys):
        if data is not None:
            row = to_row(key, data, meta)
            if _matches(row, stores, decisions):
                yield row
        if done:
            done(key)


def _read_lines(path: Path) -> list[str]:
    """Complete lines only: a line without its newline was torn by a crash."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    complete = lines[:-1]
    if lines[-1]:  # torn tail: rewrite the file without it
        path.write_text("".join(line + "\n" for line in complete))
    return complete


def pull(objects: ObjectStore, tenant: str, start: str, end: str, out: Path, fmt: str | None = None,
         stores: Iterable[str] = (), decisions: Iterable[str] = (), progress: bool = True) -> int:
    """Write the matching records to `out`; returns how many rows it holds. Resumable (see the docstring)."""
    from tqdm import tqdm

    fmt = fmt or SUFFIXES.get(out.suffix.lower(), "")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")
    part, seen_path = out.with_name(out.name + ".part"), out.with_name(out.name + ".seen")
    seen = {line for line in _read_lines(seen_path) if line}
    _read_lines(part)  # drop a torn row; its scan id is not in .seen (written after), so it is fetched again
    keys = [k for k in list_keys(objects, tenant, start, end) if manifests.scan_id_of(k) not in seen]
    with part.open("a") as rows_f, seen_path.open("a") as seen_f, \
            tqdm(total=len(keys) + len(seen), initial=len(seen), unit="rec", disable=not progress) as bar:
        def fetched(key: str) -> None:
            rows_f.flush()
            seen_f.write(manifests.scan_id_of(key) + "\n")
            seen_f.flush()
            bar.update()

        for row in iter_rows(objects, keys, set(stores) or None, set(decisions) or None, fetched):
            rows_f.write(json.dumps(row, sort_keys=True) + "\n")
    rows = [json.loads(line) for line in _read_lines(part) if line]
    _write(rows, out, fmt, part)
    part.unlink()
    seen_path.unlink()
    return len(rows)


def _write(rows: list[dict], out: Path, fmt: str, part: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "jsonl":
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    elif fmt == "csv":
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    else:
        import duckdb

        cols = "{" + ", ".join(f"'{k}': '{t}'" for k, t in COLUMNS.items()) + "}"
        con = duckdb.connect()
        con.execute(f"COPY (SELECT * FROM read_json('{part}', format='newline_delimited', columns={cols})) "
                    f"TO '{tmp}' (FORMAT parquet)")
        con.close()
    tmp.replace(out)


# --- report -------------------------------------------------------------------------------------
def report(rows: Iterable[dict]) -> dict:
    """Counts by day, store and decision; review and rejection rates; model versions in use."""
    by_day: dict[str, Counter] = defaultdict(Counter)
    by_store: dict[str, Counter] = defaultdict(Counter)
    decisions: Counter = Counter()
    models: Counter = Counter()
    for r in rows:
        by_day[r["dt"]][r["decision"]] += 1
        by_store[r["store_id"]][r["decision"]] += 1
        decisions[r["decision"]] += 1
        if r.get("model_name"):
            models[f"{r['model_name']}:{r['model_version']}"] += 1
    total = sum(decisions.values())
    return {
        "total": total,
        "by_decision": dict(sorted(decisions.items())),
        "by_day": {d: dict(sorted(c.items())) for d, c in sorted(by_day.items())},
        "by_store": {s: dict(sorted(c.items())) for s, c in sorted(by_store.items())},
        "review_rate": decisions["review"] / total if total else 0.0,
        "rejection_rate": decisions["rejected"] / total if total else 0.0,
        "models": dict(sorted(models.items())),
    }


def chart(rep: dict, path: Path, title: str = "verdicts per day") -> None:
    """A stacked bar per day, one colour per decision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    day_names = list(rep["by_day"])
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(day_names) + 2), 3.5))
    bottom = [0] * len(day_names)
    for decision in rep["by_decision"]:
        counts = [rep["by_day"][d].get(decision, 0) for d in day_names]
        ax.bar(day_names, counts, bottom=bottom, label=decision)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ax.set_ylabel("scans")
    ax.set_title(title)
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

