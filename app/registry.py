"""The loaded models and whether the service is ready to answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from app.classifier import Classifier
from app.metrics import Metrics
from app.poet import Poet
from app.settings import Settings
from app.speller import Speller

log = logging.getLogger(__name__)


class ServedModel(Protocol):
    name: str
    version: str
    provider: str

    def __init__(self, folder: Path, settings: Settings, metrics: Metrics | None = None) -> None: ...

    def warm_up(self) -> None: ...


LOADERS: dict[str, type[ServedModel]] = {"speller": Speller, "classifier": Classifier, "poet": Poet}


@dataclass
class ModelRegistry:
    models: dict[str, ServedModel] = field(default_factory=dict)
    ready: bool = False

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics | None = None) -> ModelRegistry:
        """Load, verify and warm every configured model; any broken artifact raises ArtifactError."""
        registry = cls()
        for name in settings.models:
            if name not in LOADERS:
                raise ValueError(f"unknown model {name!r} in CHARSERVE_MODELS; known: {sorted(LOADERS)}")
            model = LOADERS[name](settings.models_dir / name, settings, metrics)
            model.warm_up()
            registry.models[name] = model
            log.info("model %s %s ready on %s", name, model.version, model.provider)
        registry.ready = True
        return registry
