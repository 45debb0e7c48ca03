"""workers/runtime/models_live.py: a worker follows its alias, swaps between batches, survives a bad version."""

from __future__ import annotations

import json
import threading
import time
import uuid

import torch

from tests.workers.runtime.test_runner import twin_model
from workers.core import keys, registry, telemetry
from workers.core.settings import Settings
from workers.core.storage import MemoryObjectStore
from workers.runtime.models_live import ModelWatcher
from workers.runtime.rollout import PRODUCTION, LiveModels, ServedModel, Serving, Tally
from workers.runtime.runner import ModelInput, ModelRunner


def _versioned(offset: float):
    """A twin whose p_counterfeit is the input + offset: which model ran a scan shows in its output."""
    from tests.workers.runtime.test_runner import twin_forward

    def forward(x):
        time.sleep(0.002)  # long enough for swaps to land mid-stream
        return twin_forward(x + offset)

    return twin_model(forward)


def _store(*versions: str) -> MemoryObjectStore:
    store = MemoryObjectStore()
    for v in versions:
        store.put(keys.model_meta_s3_key(v), json.dumps({"version": v}).encode())
    return store


def _watcher(store, models: dict, settings=None, loads=None):
    tally = Tally()
    live = LiveModels(Serving(ServedModel("production", "v1", models["v1"], PRODUCTION, tally)), tally)

    def loader(version):
        if loads is not None:
            loads.append(version)
        if version not in models:
            raise ValueError(f"checkpoint {version} is truncated or corrupt")
        return models[version]

    settings = settings or Settings().with_(canary_share=0.5)
    return live, ModelWatcher(live, settings, store, "production", loader=loader)


def test_swaps_under_load_decide_each_scan_with_the_model_that_prepared_it():
    models = {f"v{i}": _versioned(i / 100) for i in range(1, 6)}
    store = _store(*models)
    registry.promote(store, "v1", "production")
    live, watcher = _watcher(store, models)
    runner = ModelRunner(live, max_batch_size=8, max_wait_s=0.002)
    results, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            x = runner.preprocess_for(_image(), uuid.uuid4().hex)  # picks its model now
            results.append(runner.result(runner.submit(x)))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    def after(n: int) -> None:  # let n more scans through (the machine may be slow)
        target, deadline = len(results) + n, time.monotonic() + 60
        while len(results) < target and time.monotonic() < deadline:
            time.sleep(0.005)

    try:
        for v in ("v2", "v3", "v4", "v5"):
            after(10)
            registry.promote(store, v, "production")
            assert watcher.tick() is True
            assert live.serving.production.version == v
        after(10)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        runner.close()
    assert len(results) > 50
    seen = set()
    for pred in results:  # the model that ran it is the one named on it, never a mix
        offset = int(pred.served.version[1:]) / 100
        assert abs(pred.p_counterfeit - (_RED + offset)) < 1e-4, (pred.served.version, pred.p_counterfeit)
        seen.add(pred.served.version)
    assert len(seen) >= 3


_RED = 200 / 255


def _image():
    from PIL import Image

    return Image.new("RGB", (8, 8), (200, 0, 0))


def test_a_version_that_fails_to_load_leaves_the_old_one_serving_and_raises_the_alarm():
    models = {"v1": _versioned(0)}
    store = _store("v1", "broken")
    registry.promote(store, "v1", "production")
    loads: list[str] = []
    live, watcher = _watcher(store, models, loads=loads)
    before = live.serving
    failures = telemetry.MODEL_LOAD_FAILURES.labels(alias="production")._value.get()
    registry.promote(store, "broken", "production")
    assert watcher.tick() is False and live.serving is before
    assert telemetry.MODEL_LOAD_FAILED.labels(alias="production")._value.get() == 1
    assert telemetry.MODEL_LOAD_FAILURES.labels(alias="production")._value.get() == failures + 1
    watcher.tick()
    assert loads == ["broken"]  # not retried every poll
    models["v2"] = _versioned(0.02)
    store.put(keys.model_meta_s3_key("v2"), b"{}")
    registry.promote(store, "v2", "production")
    assert watcher.tick() is True and live.serving.production.version == "v2"
    assert telemetry.MODEL_LOAD_FAILED.labels(alias="production")._value.get() == 0


def test_a_canary_is_served_beside_production_and_its_promotion_swaps_without_a_load():
    models = {"v1": _versioned(0), "v2": _versioned(0.02)}
    store = _store("v1", "v2")
    registry.promote(store, "v1", "production")
    loads: list[str] = []
    live, watcher = _watcher(store, models, loads=loads)
    registry.promote(store, "v2", "canary")
    assert watcher.tick() is True
    serving = live.serving
    assert serving.canary.version == "v2" and serving.canary.arm == "canary" and serving.canary_share == 0.5
    assert loads == ["v2"]
    registry.promote(store, "v2", "production")  # the canary made it: production takes its loaded model
    assert watcher.tick() is True
    assert live.serving.production.version == "v2" and live.serving.canary is None
    assert live.serving.production.model is serving.canary.model and loads == ["v2"]


def test_the_canary_share_zero_serves_production_only():
    models = {"v1": _versioned(0), "v2": _versioned(0.02)}
    store = _store("v1", "v2")
    registry.promote(store, "v1", "production")
    registry.promote(store, "v2", "canary")
    live, watcher = _watcher(store, models, settings=Settings().with_(canary_share=0.0))
    assert watcher.tick() is False and live.serving.canary is None


def test_a_runner_built_from_one_model_still_preprocesses_and_names_it():
    runner = ModelRunner(twin_model(), max_batch_size=2, max_wait_s=0.001)
    try:
        x = runner.preprocess(_image())
        assert isinstance(x, ModelInput) and x.served is runner.live.serving.production
        pred = runner.infer(x)
        assert pred.served.ref == runner.model_ref and runner.model_ref.name == "twin"
        assert runner.infer(torch.full((3, 4, 4), 0.9)).p_counterfeit > 0.89  # a bare tensor: production
    finally:
        runner.close()


def test_a_shadow_scores_the_same_scans_in_its_own_forward_pass_and_production_decides():
    tally = Tally()
    prod = ServedModel("production", "v1", _versioned(0), PRODUCTION, tally)
    shadow = ServedModel("shadow", "v7", _versioned(0.07), "shadow")
    runner = ModelRunner(LiveModels(Serving(prod, shadow=shadow, shadow_share=1.0), tally), 4, 0.002)
    try:
        preds = [runner.infer(runner.preprocess_for(_image(), uuid.uuid4().hex)) for _ in range(3)]
    finally:
        runner.close()
    for pred in preds:
        assert pred.served is prod and abs(pred.p_counterfeit - _RED) < 1e-4
        assert pred.shadow.served is shadow and abs(pred.shadow.p_counterfeit - (_RED + 0.07)) < 1e-4


def test_a_version_that_failed_for_an_s3_outage_is_tried_again_next_poll():
    from workers.core.errors import StorageUnavailable

    models = {"v1": _versioned(0), "v2": _versioned(0.02)}
    store = _store("v1", "v2")
    registry.promote(store, "v1", "production")
    live, watcher = _watcher(store, models)
    outage = [True]
    real = watcher.loader

    def loader(version):
        if outage[0]:
            raise StorageUnavailable("S3 is down")
        return real(version)

    watcher.loader = loader
    registry.promote(store, "v2", "production")
    assert watcher.tick() is False and live.serving.production.version == "v1"
    outage[0] = False
    assert watcher.tick() is True and live.serving.production.version == "v2"
