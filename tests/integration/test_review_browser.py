"""The review console in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by Selenium; nothing downloads a browser) against the real API (uvicorn), Redis and SeaweedFS.

Three scans are submitted through the API; the worker's last step, `publish` (verdicts to Redis, signed
audit records to S3, the review queue), is played with `review` verdicts, since which scans the model
is unsure of is not this test's question. A reviewer logs in, labels the three with the keyboard
(Enter, g, c, n), takes the last one back (u) and labels it again; the test reads the signed review
records back from S3 and the final decisions from GET /v1/scans/{id}, then builds a data set from them
with `tenderscan dataset from-reviews`.

`TENDERSCAN_REVIEW_SCREENSHOT=docs/review-console.png` saves the console, a scan open, to that path.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from producer.client import TenderscanClient
from producer.review.access import COOKIE
from tests.integration.conftest import BIN, TENANT_KEYS, start_stack, wait_until
from tests.integration.test_api import queued_messages
from workers.audit import manifests, signing
from workers.audit.reviews import read_reviews
from workers.core import clock
from workers.core.review_queue import ReviewQueue
from workers.core.schemas import InputRef, ModelRef, ScanMessage, Timestamps, Verdict
from workers.core.storage import S3ObjectStore
from workers.core.verdict_store import VerdictStore
from workers.runtime.context import WorkerContext
from workers.runtime.publish import publish

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REVIEWER_KEY = "rev-ann-browser"
SEED = "33" * 32  # the API's review signing key (TENDERSCAN_REVIEW_SIGNING_KEY)
AUDIT_SEED = "44" * 32  # the workers' audit key, for the verdicts publish writes


@pytest.fixture()
def stack(tmp_path, seaweedfs):
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: apt-get install chromium chromium-driver (.ci/run does)")
    digest = hashlib.sha256(REVIEWER_KEY.encode()).hexdigest()
    stack = start_stack(tmp_path, seaweedfs, workers=0, extra_env={
        "TENDERSCAN_REVIEWER_KEYS": f"ann@acme:{digest}", "TENDERSCAN_REVIEW_SIGNING_KEY": SEED,
        "TENDERSCAN_REVIEW_QC_SAMPLE": "0"})
    yield stack
    stack.stop()


@pytest.fixture()
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def scans(folder: Path) -> list[tuple[bytes, str]]:
    """Three synthetic scans of notes (the generator's scanner captures) and their denominations."""
    from models.synth.dataset import folder_sink, generate

    anns = generate(folder_sink(folder), 3, seed=7, workers=1, progress=False)
    return [((folder / a["file"]).read_bytes(), a["denomination"]) for a in anns]


def publish_review_verdicts(stack, denominations: list[str]) -> list[str]:
    """Each queued scan gets a `review` verdict through the worker's publish step (reading the
    denomination of the note, in submission order); ids oldest first."""
    settings = stack.settings
    verdicts = VerdictStore.from_settings(settings)
    ctx = WorkerContext(objects=S3ObjectStore.from_settings(settings), verdicts=verdicts,
                        reviews=ReviewQueue.from_settings(verdicts.r, settings), signer=signing.Signer(AUDIT_SEED))
    msgs = sorted((ScanMessage.decode(args) for _, args in queued_messages(redis.Redis.from_url(
        settings.effective_broker_url))), key=lambda m: m.submitted_at)
    out = [Verdict(m.scan_id, m.tenant, m.store_id, m.terminal_id, "review", InputRef(m.image_key, m.sha256, m.bytes),
                   Timestamps(m.submitted_at, completed=clock.utcnow()), reason="uncertain", confidence=0.52,
                   p_counterfeit=0.48, signs={"incomplete_printing": 0.08, "color_discrepancy": 0.21,
                                                       "watermark": 0.64, "serial_format": 0.05,
                                                       "security_thread": 0.33},
                   signs_detected=["watermark"], denomination=denom,
                   model=ModelRef("tenderscan", "browser-test", "cd" * 32))
           for m, denom in zip(msgs, denominations, strict=True)]
    with ThreadPoolExecutor(2) as pool:
        assert all(isinstance(w, Verdict) for w in publish(out, ctx, pool))
    return [m.scan_id for m in msgs]


def test_a_reviewer_labels_three_scans_with_the_keyboard_and_the_records_land_in_s3(stack, browser, repo_root,
                                                                                   tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with TenderscanClient(stack.api_url, TENANT_KEYS["acme"]) as client:
        assert wait_until(client.ready, 60), "API never became ready"
        uploads = scans(tmp_path / "scans")
        for data, _ in uploads:
            client.submit(data, store_id="s1", terminal_id="t1")
            time.sleep(0.01)  # distinct submission times: the queue's order is the submission order
    scan_ids = publish_review_verdicts(stack, [denom for _, denom in uploads])

    browser.get(f"{stack.api_url}/review")
    browser.find_element(By.ID, "key").send_keys(REVIEWER_KEY)
    browser.find_element(By.ID, "login").click()
    rows = lambda: browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr")  # noqa: E731
    assert wait_until(lambda: len(rows()) == 3, 30), browser.page_source[:2000]
    assert [r.get_attribute("data-scan-id") for r in rows()] == scan_ids  # oldest first

    from selenium.webdriver.common.action_chains import ActionChains

    def press(key: str) -> None:  # a key pressed on the page itself, as a reviewer does
        ActionChains(browser).send_keys(key).perform()

    labelled = []
    for key, label in (("g", "genuine"), ("c", "counterfeit"), ("n", "not_a_banknote")):
        if not labelled:
            press(Keys.ENTER)  # opens the oldest; after a label the next one opens by itself
        assert wait_until(lambda: browser.find_element(By.ID, "scan-id").text == scan_ids[len(labelled)], 30)
        assert wait_until(lambda: browser.execute_script(
            "const i = document.getElementById('scan-canonical'); return i.complete && i.naturalWidth > 0"), 30)
        if not labelled and os.environ.get("TENDERSCAN_REVIEW_SCREENSHOT"):
            browser.find_element(By.ID, "sign-watermark").click()
            browser.find_element(By.ID, "note").send_keys("watermark faint against the light")
            browser.find_element(By.ID, "note").send_keys(Keys.ESCAPE)
            browser.execute_script("window.scrollTo(0, 0)")
            browser.save_screenshot(str(repo_root / os.environ["TENDERSCAN_REVIEW_SCREENSHOT"]))
        press(key)
        labelled.append(label)
        done = f"{scan_ids[len(labelled) - 1][:8]} as {label}"
        assert wait_until(lambda done=done: done in browser.find_element(By.ID, "undo-what").text, 30), done

    press("u")  # take the last one back: it reopens, and is judged again
    assert wait_until(lambda: "Took back" in browser.find_element(By.ID, "status").text, 30)
    assert browser.find_element(By.ID, "scan-id").text == scan_ids[2]
    press("c")
    assert wait_until(lambda: f"{scan_ids[2][:8]} as counterfeit" in browser.find_element(By.ID, "undo-what").text, 30)
    assert wait_until(lambda: len(rows()) == 0 and "Nothing awaits" in browser.find_element(By.ID, "status").text, 30)

    objects = S3ObjectStore.from_settings(stack.settings)
    verifier = signing.Verifier([], [signing.Signer(SEED).public_hex])  # the API's review key
    today = clock.utcnow()[:10]
    records = {r.scan_id: (key, r) for key, r in read_reviews(objects, today, today, "acme")}
    assert {sid: r.label for sid, (_, r) in records.items()} == dict(
        zip(scan_ids, ["genuine", "counterfeit", "counterfeit"], strict=True))
    for key, review in records.values():
        obj = objects.get(key)
        assert manifests.check_record(verifier, key, obj.data, obj.metadata) is None
        assert review.reviewer == "ann@acme" and review.model_decision == "review"
    with TenderscanClient(stack.api_url, TENANT_KEYS["acme"]) as client:
        assert [client.get(sid)["final_decision"] for sid in scan_ids] == ["genuine", "counterfeit", "counterfeit"]

    # and the labels go back into training: `tenderscan dataset from-reviews` on the same bucket
    out = subprocess.run([str(BIN / "tenderscan"), "dataset", "from-reviews", "--since", today, "--out",
                          str(tmp_path / "reviewed")], env=stack.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "wrote 3 reviewed scans (2 counterfeit, 1 genuine)" in out.stdout
    lines = [json.loads(x) for x in (tmp_path / "reviewed" / "manifest.jsonl").read_text().splitlines()]
    assert {a["scan_id"]: a["label"] for a in lines} == {sid: r.label for sid, (_, r) in records.items()}
    assert all((tmp_path / "reviewed" / a["file"]).stat().st_size > 1000 for a in lines)


WAITING = int(os.environ.get("TENDERSCAN_REVIEW_WAITING", "10000"))


def test_the_console_with_10000_scans_waiting_loads_one_page_and_is_timed(stack, browser, repo_root):
    """Measured, not asserted against a number: 10,000 `review` verdicts in the tenant's sorted set
    (ReviewQueue.enqueue, as publish does; no image behind them), then the page's navigation timing and
    the queue API's own time, in the browser and over HTTP. `TENDERSCAN_REVIEW_TIMING=docs/x.json`
    writes the numbers (docs/REVIEW.md, Console load)."""
    import statistics

    import httpx
    from selenium.webdriver.common.by import By

    queue = ReviewQueue(redis.Redis.from_url(stack.settings.redis_url))
    base = time.time() - 3600  # submitted over the last hour, 0.1 s apart
    for start in range(0, WAITING, 1000):
        batch = [Verdict(f"{i:032x}", "acme", "s1", "t1", "review", InputRef(f"scans/x/{i:032x}.jpg", "ab" * 32, 1),
                         Timestamps(clock.format_time(datetime.fromtimestamp(base + i * 0.1, UTC))))
                 for i in range(start, min(WAITING, start + 1000))]
        assert queue.enqueue(batch) == len(batch)
    assert queue.depth(["acme"]) == WAITING

    browser.get(f"{stack.api_url}/review")
    browser.find_element(By.ID, "key").send_keys(REVIEWER_KEY)
    browser.find_element(By.ID, "login").click()  # a POST, then the 303 to /review: that navigation is timed
    rows = lambda: browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr")  # noqa: E731
    assert wait_until(lambda: len(rows()) == min(WAITING, 200), 60), browser.page_source[:2000]
    assert f"of {WAITING}" in browser.find_element(By.ID, "queue-count").text
    timing = browser.execute_script("""
        const t = performance.timing, q = performance.getEntriesByType('resource')
            .filter((e) => e.name.endsWith('/review/api/queue'));
        return {dom_content_loaded_ms: t.domContentLoadedEventEnd - t.navigationStart,
                load_ms: t.loadEventEnd - t.navigationStart,
                queue_fetch_ms: q.length ? q[0].duration : null};""")
    browser.refresh()  # again, warm: the same page, the same 10,000
    assert wait_until(lambda: len(rows()) == min(WAITING, 200), 60)
    shown_ms = browser.execute_script("""
        return performance.now();""")  # rows present by now: an upper bound on navigation -> table
    warm = browser.execute_script("""
        const t = performance.timing, q = performance.getEntriesByType('resource')
            .filter((e) => e.name.endsWith('/review/api/queue'));
        return {load_ms: t.loadEventEnd - t.navigationStart, queue_fetch_ms: q.length ? q[0].duration : null};""")
    session = browser.get_cookie(COOKIE)["value"]
    api_ms = []
    with httpx.Client(base_url=stack.api_url, headers={"Cookie": f"{COOKIE}={session}"}, timeout=30) as http:
        for _ in range(20):
            t0 = time.perf_counter()
            resp = http.get("/review/api/queue")
            api_ms.append(1000 * (time.perf_counter() - t0))
            assert resp.status_code == 200 and len(resp.json()["items"]) == min(WAITING, 200)
            assert resp.json()["total"] == WAITING
    report = {"waiting": WAITING, "page_rows": min(WAITING, 200), "first_load": timing,
              "warm_load": {**warm, "table_shown_by_ms": round(shown_ms, 1)},
              "api_queue_ms": {"median": round(statistics.median(api_ms), 1), "max": round(max(api_ms), 1),
                               "requests": len(api_ms)},
              "bytes": len(resp.content)}
    print(json.dumps(report))
    if os.environ.get("TENDERSCAN_REVIEW_TIMING"):
        (repo_root / os.environ["TENDERSCAN_REVIEW_TIMING"]).write_text(json.dumps(report, indent=2) + "\n")
