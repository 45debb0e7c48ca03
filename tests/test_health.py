import time

from workers import health


def test_probe_passes_on_a_fresh_heartbeat_and_fails_on_a_stale_or_missing_one(tmp_path):
    path = tmp_path / "hb"
    assert health.main(["--file", str(path)]) == 1  # missing
    health.beat(path)
    assert health.main(["--file", str(path), "--max-age", "60"]) == 0
    path.write_text(f"{time.time() - 300}\n")
    assert health.main(["--file", str(path), "--max-age", "60"]) == 1


def test_heartbeat_stops_when_the_batcher_is_dead(tmp_path):
    path = tmp_path / "hb"
    alive = {"value": True}
    stop = health.start_heartbeat(lambda: alive["value"], path, interval_s=0.05)
    try:
        deadline = time.time() + 5
        while not path.exists() and time.time() < deadline:
            time.sleep(0.01)
        assert health.age_s(path) is not None and health.age_s(path) < 1
        alive["value"] = False
        time.sleep(0.3)
        assert health.age_s(path) >= 0.2  # no refresh once the batcher is gone
    finally:
        stop.set()
