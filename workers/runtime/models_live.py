"""A new model without a restart: the worker follows the registry aliases it serves.

    initial_live(settings)   the runner's first LiveModels: a path (the checkpoint's own version), or
                             registry:ALIAS|VERSION, resolved, sha256-verified and loaded
    load_version(...)        one registry version -> LoadedModel: download (or cache), the file's sha256
                             against meta.json, the weights' sha256 against meta's weights_sha256
    ModelWatcher             a thread (one per worker process, from WorkerContext.start_services): every
                             MODEL_POLL_S it reads the serving, canary and shadow aliases; a version not
                             yet loaded is loaded and warmed up beside the old one, then the whole Serving
                             snapshot is swapped in one assignment, between batches. Then the canary's
                             judge (rollout.CanaryJudge) flushes the tally and may roll the canary back.

What a swap guarantees (runner.py): a scan is preprocessed, run and decided by one model, the one it
picked when it was preprocessed; batches already formed finish on the old model, which is freed when
its last scan is decided. A version that fails to verify or load is skipped until the alias moves
again (one that failed for an S3 outage is tried again at the next poll): the old version keeps serving, `model_load_failed` is logged and
tenderscan_model_load_failed{alias} is 1 until a version loads. A promotion of the canary's version
swaps at once (the canary's loaded model is relabelled, not loaded again).

Only an alias is followed: TENDERSCAN_MODEL=registry:production is; registry:VERSION and a path are
pinned (nothing to watch).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import structlog

from workers.core import registry, telemetry
from workers.core.errors import TransientError
from workers.core.settings import Settings
from workers.runtime.rollout import (
    CANARY,
    PRODUCTION,
    SHADOW,
    Band,
    CanaryJudge,
    LiveModels,
    ServedModel,
    Serving,
    Tally,
)

log = structlog.get_logger("workers.runtime.models_live")


def _store(settings: Settings):
    from workers.core.storage import S3ObjectStore

    return S3ObjectStore.from_settings(settings, settings.models_bucket)


def _ref(settings: Settings) -> str | None:
    """The registry reference of TENDERSCAN_MODEL (alias or version), or None for a path."""
    model = settings.model
    return model[len(registry.REGISTRY_PREFIX):] if model.startswith(registry.REGISTRY_PREFIX) else None


def load_version(settings: Settings, store, version: str, cache_dir: Path | None = None):
    """Download (or reuse), verify and load one registry version, warmed up for the batch size."""
    from workers.runtime.runner import MODEL_CACHE_DIR, load_path, warm_up_model

    t0 = time.monotonic()
    path, meta = registry.resolve_with_meta(store, version, cache_dir or MODEL_CACHE_DIR)
    t1 = time.monotonic()
    model = load_path(path, settings, expected_sha256=meta["weights_sha256"])
    t2 = time.monotonic()
    warm_s = warm_up_model(model, settings.max_batch_size)
    log.info("model_ready", version=version, fetch_s=round(t1 - t0, 3), load_s=round(t2 - t1, 3),
             warm_up_s=round(warm_s, 3))
    return model


def initial_live(settings: Settings) -> LiveModels:
    """What a worker serves at start (production only; the watcher's first tick adds a canary)."""
    from workers.runtime.runner import load_model

    tally = Tally()
    ref = _ref(settings)
    if ref is None:
        model = load_model(settings)
        served = ServedModel(PRODUCTION, model.ref.version, model, PRODUCTION, tally)
    else:
        store = _store(settings)
        version = registry.resolve_version(store, ref)
        served = ServedModel(ref, version, load_version(settings, store, version), PRODUCTION, tally)
    live = LiveModels(Serving(served), tally)
    telemetry.observe_model_loaded(served.alias, served.version, None)
    return live


class ModelWatcher:
    """Follows the serving alias and the canary alias (see the module docstring)."""

    def __init__(self, live: LiveModels, settings: Settings, store, alias: str, judge: CanaryJudge | None = None,
                 loader=None) -> None:
        self.live, self.settings, self.store, self.alias, self.judge = live, settings, store, alias, judge
        self.loader = loader or (lambda version: load_version(settings, store, version))
        self.failed: set[str] = set()  # versions that failed to load: not retried until named again
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tenderscan-model-watcher", daemon=True)

    def start(self) -> ModelWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - S3 or Redis down: keep serving, look again next tick
                log.warning("model_watch_failed", error=type(exc).__name__, detail=str(exc)[:200])
            self._stop.wait(self.settings.model_poll_s)

    def tick(self) -> bool:
        """One look at the aliases; True when the Serving was swapped."""
        serving = self.live.serving
        wanted = registry.alias_version(self.store, self.alias)
        canary_alias = self.settings.canary_alias
        canary_v = registry.alias_version(self.store, canary_alias) if self.settings.canary_share > 0 else None
        production = self._served(self.alias, wanted, PRODUCTION, serving) or serving.production
        canary = None
        if canary_v is not None and canary_v != production.version:
            canary = self._served(canary_alias, canary_v, CANARY, serving) or serving.canary
        shadow_alias = self.settings.shadow_alias
        shadow_v = registry.alias_version(self.store, shadow_alias) if self.settings.shadow_share > 0 else None
        shadow = None
        if shadow_v is not None and shadow_v != production.version:
            shadow = self._served(shadow_alias, shadow_v, SHADOW, serving) or serving.shadow
        new = Serving(production, canary, self.settings.canary_share if canary is not None else 0.0,
                      shadow, self.settings.shadow_share if shadow is not None else 0.0)
        swapped = any(a is not b for a, b in zip(new.models(), serving.models(), strict=True))
        if swapped:
            self._swap(serving, new)
        if self.judge is not None:
            self.judge.tick(self.live.serving, self.live.tally)
        return swapped

    def _served(self, alias: str, version: str | None, arm: str, serving: Serving) -> ServedModel | None:
        """The ServedModel for alias -> version: the one serving, a relabelled loaded one, a new load, or
        None (the alias is unset, or its version failed to load)."""
        if version is None:
            return None
        tally = None if arm == SHADOW else self.live.tally  # a shadow's counts are its stream's
        for s in serving.models():
            if s is not None and s.version == version:
                return s if (s.alias, s.arm) == (alias, arm) else ServedModel(alias, version, s.model, arm, tally)
        if version in self.failed:
            return None
        log.info("model_loading", alias=alias, version=version)
        try:
            model = self.loader(version)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the old version serving
            if not isinstance(exc, TransientError):  # S3 down: try again next poll; a bad file: not until named again
                self.failed.add(version)
            telemetry.observe_model_load_failed(alias)
            log.error("model_load_failed", alias=alias, version=version, error=type(exc).__name__,
                      detail=str(exc)[:300])
            return None
        return ServedModel(alias, version, model, arm, tally)

    def _swap(self, old: Serving, new: Serving) -> None:
        self.live.swap(new)
        for before, after in zip(old.models(), new.models(), strict=True):
            if after is not None and after is not before:
                telemetry.MODEL_SWAPS.labels(alias=after.alias).inc()
                telemetry.observe_model_loaded(after.alias, after.version,
                                               before.version if before is not None else None)
            elif after is None and before is not None:
                telemetry.observe_model_unloaded(before.alias, before.version)
        log.info("model_swapped", production=new.production.version, was=old.production.version,
                 canary=new.canary.version if new.canary else None, canary_share=new.canary_share,
                 shadow=new.shadow.version if new.shadow else None)
        _release_cuda(old, new)


def _release_cuda(old: Serving, new: Serving) -> None:
    """The old model's tensors go when its last scan is decided; on CUDA give the cache back too."""
    kept = {id(s.model) for s in new.models() if s is not None}
    dropped = [s for s in old.models() if s is not None and id(s.model) not in kept]
    if dropped and any(getattr(s.model, "device", None) is not None and s.model.device.type == "cuda"
                       for s in dropped):
        import torch

        torch.cuda.empty_cache()


def start_watcher(runner, settings: Settings, verdicts, signer) -> ModelWatcher | None:
    """The worker's watcher, when it serves a registry alias and MODEL_POLL_S > 0; else None (pinned)."""
    ref, live = _ref(settings), getattr(runner, "live", None)
    if ref is None or live is None or settings.model_poll_s <= 0:
        return None
    store = _store(settings)
    if registry.alias_version(store, ref) is None:
        return None  # a version, not an alias: pinned
    judge = CanaryJudge(verdicts, store, signer, settings.canary_alias, settings.canary_window_s,
                        Band.from_settings(settings))
    log.info("model_watching", alias=ref, canary_alias=settings.canary_alias, poll_s=settings.model_poll_s)
    return ModelWatcher(live, settings, store, ref, judge).start()
