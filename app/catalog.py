"""The one table of served models: each name's adapter (text → arrays → decoding → answers) and the scheduler
that batches its requests, and the registry of what this process has loaded."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.adapters.classifier import Classifier
from app.adapters.poet import Poet
from app.adapters.speller.model import Speller
from app.engine.continuous import ContinuousBatcher
from app.engine.dynamic import DynamicBatcher
from app.engine.fan_out import FanOut
from app.engine.protocol import ItemScheduler, Scheduler
from app.engine.workers import Limiter, WorkerPool
from app.metrics import Metrics
from app.settings import Settings

log = logging.getLogger(__name__)


class ServedModel(Protocol):
    name: str
    version: str
    provider: str

    def __init__(self, folder: Path, settings: Settings, metrics: Metrics | None = None) -> None: ...

    def warm_up(self) -> None: ...


SchedulerFactory = Callable[[Any, Settings, Limiter, Metrics], Scheduler]


def dynamic(model: Any, settings: Settings, workers: Limiter, metrics: Metrics) -> DynamicBatcher:
    """Concurrent requests' texts gathered into one model call (`model.batch`), at most batch_max_texts a call."""
    return batcher(
        model.name, model.batch, settings, workers, metrics,
        max_batch=settings.batch_max_texts, max_queue=settings.max_queue_texts,
    )  # fmt: skip


def batcher(
    name: str, fn: Any, settings: Settings, workers: Limiter, metrics: Metrics, **limits: Any
) -> DynamicBatcher:
    return DynamicBatcher(
        name,
        fn,
        max_wait_s=settings.batch_max_wait_ms / 1000,
        deadline_s=settings.request_deadline_s,
        limiter=workers,
        metrics=metrics,
        **limits,
    )


def continuous(model: Any, settings: Settings, workers: Limiter, metrics: Metrics, **options: Any):
    return ContinuousBatcher(model, deadline_s=settings.request_deadline_s, limiter=workers, metrics=metrics, **options)


def speller_scheduler(model: Speller, settings: Settings, workers: Limiter, metrics: Metrics) -> Scheduler:
    """Each request's texts split into their unknown words, which are batched across requests: dynamically by
    default (on a CPU core whole calls measured faster, docs/design.md), in calls of at most
    speller_max_batch_words words taken from the waiting requests in turn; continuously when set so: each word
    joins the running beam search at the next step."""
    if settings.speller_scheduling == "continuous" and settings.batch_max_texts > 1:
        words: ItemScheduler = continuous(
            model,
            settings,
            workers,
            metrics,
            max_batch=settings.speller_max_batch_words,
            max_queue=settings.speller_max_queue_words,
            join_fraction=settings.speller_join_fraction,
        )
    else:
        words = batcher(
            model.name, model.batch_words, settings, workers, metrics,
            max_batch=settings.speller_max_batch_words, max_queue=settings.speller_max_queue_words,
            shared=settings.batch_max_texts > 1,  # 1: batching off, requests never share a call
        )  # fmt: skip
    return FanOut(model, words)


def poet_scheduler(model: Poet, settings: Settings, workers: Limiter, metrics: Metrics) -> Scheduler:
    """Continuous: a poem joins the running batch at the next step and leaves when it ends."""
    return continuous(
        model,
        settings,
        workers,
        metrics,
        max_batch=settings.poet_max_batch,
        max_queue=settings.poet_max_queue,
        static=settings.poet_scheduling == "static",
        padded=settings.poet_scheduling == "static_padded",
    )


@dataclass(frozen=True)
class CatalogEntry:
    adapter: type[ServedModel]
    scheduler: SchedulerFactory


CATALOG: dict[str, CatalogEntry] = {
    "speller": CatalogEntry(Speller, speller_scheduler),
    "classifier": CatalogEntry(Classifier, dynamic),
    "poet": CatalogEntry(Poet, poet_scheduler),
    # The same adapter: the manifest says the language model is a Transformer with a key/value cache.
    "poet_transformer": CatalogEntry(Poet, poet_scheduler),
}


@dataclass
class ModelRegistry:
    models: dict[str, ServedModel] = field(default_factory=dict)
    ready: bool = False

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics | None = None) -> ModelRegistry:
        """Load, verify and warm every configured model; any broken artifact raises ArtifactError."""
        registry = cls()
        for name in settings.models:
            if name not in CATALOG:
                raise ValueError(f"unknown model {name!r} in CHARSERVE_MODELS; known: {sorted(CATALOG)}")
            model = CATALOG[name].adapter(settings.models_dir / name, settings, metrics)
            model.warm_up()
            registry.models[name] = model
            log.info("model %s %s ready on %s", name, model.version, model.provider)
        registry.ready = True
        return registry

    def schedulers(self, settings: Settings, workers: WorkerPool, metrics: Metrics) -> dict[str, Scheduler]:
        """One scheduler per loaded model, as the catalog says, each with its share of the workers."""
        return {
            name: CATALOG[name].scheduler(model, settings, workers.share(name), metrics)
            for name, model in self.models.items()
        }
