import time

from workers.runtime import health


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


def test_with_several_processes_every_childs_heartbeat_must_be_fresh(tmp_path):
    base = tmp_path / "hb"
    files = health.heartbeat_files(base, 3)
    assert files == [tmp_path / "hb.0", tmp_path / "hb.1", tmp_path / "hb.2"]
    assert health.heartbeat_files(base, 1) == [base]
    for path in files:
        health.beat(path)
    assert health.main(["--file", str(base), "--processes", "3"]) == 0
    assert health.main(["--file", str(base), "--processes", "1"]) == 1  # nobody writes hb itself then
    files[1].write_text(f"{time.time() - 300}\n")
    assert health.main(["--file", str(base), "--processes", "3", "--max-age", "60"]) == 1
    files[1].unlink()
    assert health.main(["--file", str(base), "--processes", "3"]) == 1


def test_the_probe_takes_the_count_from_the_setting(tmp_path, monkeypatch):
    base = tmp_path / "hb"
    health.beat(tmp_path / "hb.0")
    monkeypatch.setenv("TENDERSCAN_WORKER_PROCESSES", "2")
    assert health.main(["--file", str(base)]) == 1  # hb.1 missing
    health.beat(tmp_path / "hb.1")
    assert health.main(["--file", str(base)]) == 0


def test_children_beating_at_once_never_share_a_temporary_file(tmp_path):
    import threading

    files = [tmp_path / f"hb.{i}" for i in range(4)]  # what workers/runtime/supervisor.py names them
    errors = []

    def hammer(path):
        try:
            for _ in range(300):
                health.beat(path)
        except OSError as exc:  # one child's replace() taking another's temporary file
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(p,)) for p in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(health.age_s(p) is not None for p in files)
