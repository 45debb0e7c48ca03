"""workers/runtime/shadow.py: the shadow's own sample, its stream in the real Redis, and the comparison."""

from __future__ import annotations

import uuid

from workers.core.verdict_store import VerdictStore, redis_client
from workers.runtime.rollout import routes_to_canary, routes_to_shadow
from workers.runtime.shadow import compare


def test_the_shadow_samples_its_own_scans_and_compare_reports_agreement(clean_redis):
    ids = [uuid.uuid4().hex for _ in range(5000)]
    both = sum(routes_to_shadow(i, 0.2) and routes_to_canary(i, 0.2) for i in ids) / len(ids)
    assert 0.02 < both < 0.06  # independent samples: about 0.2 x 0.2
    verdicts = VerdictStore(redis_client(clean_redis))
    rows = [("s1", "genuine", "genuine", "watermark", "watermark"), ("s1", "genuine", "review", "", ""),
            ("s2", "counterfeit", "counterfeit", "watermark,serial_format", "serial_format")]
    for i, (store, ours, theirs, signs, shadow_signs) in enumerate(rows):
        verdicts.add_shadow("v9", {"scan_id": f"scan{i}", "tenant": "acme", "store": store, "decision": ours,
                                   "shadow_decision": theirs, "model": "v1", "signs": signs,
                                   "shadow_signs": shadow_signs, "p": "0.1", "shadow_p": "0.4"})
    entries = list(verdicts.shadow_entries("v9", page=2))  # pages of two: the paging is used
    assert [e["scan_id"] for e in entries] == ["scan0", "scan1", "scan2"]
    report = compare(entries)
    assert report["scans"] == 3 and report["agree"] == 2
    assert report["by_decision"]["genuine"] == {"scans": 2, "agree": 1, "agreement": 0.5}
    assert report["by_store"]["acme/s2"]["agreement"] == 1.0
    assert report["by_sign"]["watermark"] == {"scans": 2, "agree": 1, "agreement": 0.5}
    assert report["differing"] == [{"scan_id": "scan1", "tenant": "acme", "store": "s1", "decision": "genuine",
                                    "shadow_decision": "review", "p": "0.1", "shadow_p": "0.4"}]
    later = int(entries[-1]["id"].split("-")[0]) + 1
    assert list(verdicts.shadow_entries("v9", since_ms=later)) == []
