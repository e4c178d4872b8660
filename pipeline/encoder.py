"""Pretrained encoders: find one by name or file, check it fits a classifier, copy its weights.

An encoder is the classifier's conv blocks alone (:func:`pipeline.model.build_encoder`; the
layers of :func:`encoder_layers`), saved by ``python -m pipeline pretrain`` as ``encoder.keras``
with its card ``encoder.json`` beside it.
The shipped ones live in ``pipeline/pretraining/weights/<name>.keras``; ``model.init`` names one
of those, or the path of any ``encoder.keras``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras

from pipeline.config import RunConfig

SHIPPED = Path(__file__).resolve().parent / "pretraining" / "weights"
# What must match between the encoder's config and the classifier's for the weights to load.
_SHAPE_FIELDS = ("filters", "kernel_size", "stride", "padding", "batch_norm")


def shipped_names() -> list[str]:
    """Names of the encoders shipped with the package."""
    return sorted(p.stem for p in SHIPPED.glob("*.keras"))


def resolve(init: str) -> Path:
    """The ``.keras`` file that ``model.init`` names; ValueError saying what exists otherwise."""
    named = SHIPPED / f"{init}.keras"
    if named.is_file():
        return named
    path = Path(init).expanduser()
    if path.is_dir():
        path = path / "encoder.keras"
    if path.suffix == ".keras" and path.is_file():
        return path.resolve()
    shipped = ", ".join(shipped_names()) or "none"
    raise ValueError(
        f"model.init: no encoder {init!r} — use 'scratch', a shipped encoder ({shipped}) or "
        "the path of an encoder.keras made by `python -m pipeline pretrain`"
    )


def card(init: str) -> dict[str, Any]:
    """The card of the encoder ``init`` names (how it was made; ``{}`` when it has none)."""
    path = resolve(init).with_suffix(".json")
    return json.loads(path.read_text()) if path.is_file() else {}


def encoder_layers(cfg: RunConfig) -> list[str]:
    """Names of the layers that hold the encoder's weights (conv blocks and their batch norm)."""
    names = []
    for i in range(1, len(cfg.model.filters) + 1):
        names.append(f"block{i}_conv")
        if cfg.model.batch_norm:
            names.append(f"block{i}_bn")
    return names


def load_into(model: keras.Model, cfg: RunConfig) -> None:
    """Copy the conv-block weights of the encoder ``cfg.model.init`` names into ``model``.

    Raises ValueError when the encoder was made for another architecture (filters, kernel,
    stride, padding, batch norm or input channels), naming the difference.
    """
    path = resolve(cfg.model.init)
    made_for = card(cfg.model.init).get("config")
    if made_for:
        _check_fits(made_for, cfg, path)
    encoder = keras.saving.load_model(path, compile=False, safe_mode=True)
    for name in encoder_layers(cfg):
        try:
            source = encoder.get_layer(name)
        except ValueError:
            raise ValueError(
                f"{path}: the encoder has no layer {name}; pretrain one for this architecture"
            ) from None
        target = model.get_layer(name)
        if [w.shape for w in source.get_weights()] != [w.shape for w in target.get_weights()]:
            raise ValueError(
                f"{path}: layer {name} has other shapes than the classifier's (an encoder made "
                "for other filters or channels); pretrain one with this model config"
            )
        target.set_weights(source.get_weights())


def set_trainable(model: keras.Model, cfg: RunConfig, trainable: bool) -> None:
    """Freeze or unfreeze the encoder's layers of ``model`` (compile again afterwards)."""
    for name in encoder_layers(cfg):
        model.get_layer(name).trainable = trainable


def _check_fits(made_for: dict[str, Any], cfg: RunConfig, path: Path) -> None:
    model = made_for.get("model", {})
    differ = [
        f"model.{f}: encoder {_shown(model[f])}, classifier {_shown(getattr(cfg.model, f))}"
        for f in _SHAPE_FIELDS
        if f in model and _same(model[f]) != _same(getattr(cfg.model, f))
    ]
    channels = made_for.get("data", {}).get("channels")
    if channels is not None and channels != cfg.data.channels:
        differ.append(f"data.channels: encoder {channels}, classifier {cfg.data.channels}")
    if differ:
        raise ValueError(
            f"{path} was pretrained for another architecture ({'; '.join(differ)}); set these "
            "to the encoder's values or pretrain an encoder for this config"
        )


def _shown(value: Any) -> str:
    return str(list(value)) if isinstance(value, list | tuple) else repr(value)


def _same(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value
