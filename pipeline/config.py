"""The run config: one frozen, validated object that fully describes a training run.

A run reads nothing but its config (no globals, no argv). The resolved config is saved with every
run as JSON, so a run can be re-launched exactly. Invalid values raise :class:`ConfigError`, whose
message names the field, the value given and the allowed range.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Enhancement = Literal["none", "contrast_stretch", "hist_eq", "clahe"]
ENHANCEMENTS: tuple[str, ...] = ("none", "contrast_stretch", "hist_eq", "clahe")


class ConfigError(ValueError):
    """A run config was refused; ``str(err)`` lists one ``field: problem`` line per error."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid run config:\n" + "\n".join(f"  - {p}" for p in problems))


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Section):
    """Where the images come from and how they are preprocessed before the model sees them."""

    # One folder (a string, as every config before several sources) or a list of folders, each
    # in its own layout; several are combined by pipeline.preprocessing.sources. Read it through
    # ``sources``.
    path: str | tuple[str, ...] = Field(
        "data/phantoms",
        description="dataset folder, or a list of folders trained on together, each image "
        "keeping its source (see pipeline.data.scan, pipeline.preprocessing.sources)",
    )
    image_size: int = Field(128, ge=32, le=1024, description="square side in pixels")
    channels: Literal[1, 3] = Field(3, description="1 = gray; 3 = gray copied to RGB")
    enhancement: Enhancement = "none"
    clahe_clip: float = Field(2.0, gt=0, le=40, description="CLAHE clip limit")
    clahe_tile: int = Field(8, ge=1, le=64, description="CLAHE tiles per side")
    # Why: shortcuts (boxes, markers, text) sit outside the lungs; see pipeline/lungs/roi.py.
    roi: Literal["full", "lung_crop", "lung_mask"] = Field(
        "full",
        description="full: whole film; lung_crop: box of both lungs; lung_mask: outside "
        "the lungs set to black (both by the shipped lung segmenter)",
    )
    roi_margin: float = Field(
        0.05, ge=0, le=0.5, description="lung_crop: margin around the lungs, share of the box"
    )
    # Why: the collection's marks and grey levels are shortcuts
    # (pipeline/preprocessing/artefacts.py, pipeline/preprocessing/intensity.py); both steps run
    # before the lung ROI and enhancement.
    artefacts: Literal["keep", "inpaint", "crop_border"] = Field(
        "keep",
        description="keep: as is; inpaint: burned-in boxes, text and markers filled in; "
        "crop_border: uniform bands trimmed and a border band cut off (bottom fifth)",
    )
    intensity: Literal["none", "percentile", "hist_match"] = Field(
        "none",
        description="percentile: clip to the 1st-99th percentile and stretch; hist_match: "
        "grey levels mapped onto the shipped reference distribution",
    )
    normalisation: Literal["unit", "zscore"] = Field(
        "unit", description="unit: [0, 1]; zscore: per-image mean 0, std 1"
    )
    pca_components: int | None = Field(
        None, ge=1, le=4096, description="PCA denoising: keep this many components (None = off)"
    )
    external: tuple[str, ...] = Field(
        (),
        description="dataset folders from other hospitals: after training the run is evaluated "
        "on each at its validated threshold (a folder of TB images alone gives sensitivity)",
    )
    val_fraction: float = Field(0.1, ge=0.05, le=0.4, description="share of all images")
    test_fraction: float = Field(0.2, ge=0.05, le=0.5, description="share of all images")

    @field_validator("path")
    @classmethod
    def _distinct_sources(cls, v: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(v, str):
            return v
        if not v:
            raise ValueError("give at least one dataset folder (an empty list has no images)")
        if len(v) == 1:
            return v[0]  # one folder is stored as before, so its runs compare with older ones
        seen: dict[Path, str] = {}
        for folder in v:
            here = Path(os.path.abspath(os.path.expanduser(folder)))
            for there, other in seen.items():
                if here == there:
                    raise ValueError(f"{folder!r} is listed twice (as {other!r}); list it once")
                if here.is_relative_to(there) or there.is_relative_to(here):
                    raise ValueError(
                        f"{folder!r} and {other!r}: one folder is inside the other, so its "
                        "images would be read twice; list separate folders"
                    )
            seen[here] = folder
        return v

    @property
    def sources(self) -> tuple[str, ...]:
        """The dataset folders, in the order given: one for a single ``path``."""
        return (self.path,) if isinstance(self.path, str) else self.path

    @property
    def root(self) -> str:
        """The folder that image paths saved with a run (split.json, predictions.csv) are
        relative to: ``path`` itself for one folder, the folders' common parent for several."""
        return data_root(self.path)

    @field_validator("external")
    @classmethod
    def _distinct_folders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        folders = [os.path.normpath(p.strip()) for p in v]
        if any(not p.strip() for p in v):
            raise ValueError("an external folder is an empty path")
        if len(set(folders)) < len(folders):
            raise ValueError(f"an external folder is listed twice ({list(v)})")
        return tuple(folders)

    @model_validator(mode="after")
    def _external_is_not_the_training_data(self) -> DataConfig:
        for folder in self.sources:
            if os.path.normpath(folder) in self.external:
                raise ValueError(
                    f"external: {folder} is training data itself; external folders must "
                    "hold X-rays from elsewhere"
                )
        return self

    @model_validator(mode="after")
    def _enough_training_data(self) -> DataConfig:
        if self.val_fraction + self.test_fraction > 0.7:
            raise ValueError(
                "val_fraction + test_fraction must be at most 0.7 so that at least 30% of the "
                f"images are left for training (got {self.val_fraction} + {self.test_fraction})"
            )
        return self


class AugmentConfig(_Section):
    """Random training-time augmentation (Keras preprocessing layers; off at evaluation)."""

    rotation_deg: float = Field(10.0, ge=0, le=45, description="max rotation, degrees")
    # Off by default: a mirrored chest puts the heart on the wrong side, a cue a model could use.
    horizontal_flip: bool = False
    zoom: float = Field(0.1, ge=0, le=0.5, description="max zoom in/out, fraction")
    brightness: float = Field(0.1, ge=0, le=0.5, description="max brightness shift, fraction")
    # Appearance: what another machine or hospital changes (pipeline/imaging/appearance.py). All
    # off by default; each is drawn per image (blur and resampling per batch, on a random half).
    gamma: float = Field(0.0, ge=0, le=1, description="gamma drawn from [1/(1+g), 1+g]; 0 = off")
    contrast: float = Field(
        0.0, ge=0, lt=1, description="contrast scaled by [1-c, 1+c] about the mean; 0 = off"
    )
    blur: float = Field(0.0, ge=0, le=4, description="max Gaussian blur sigma, pixels; 0 = off")
    noise: float = Field(
        0.0, ge=0, le=0.2, description="max Gaussian noise std, fraction of the range; 0 = off"
    )
    resample: float = Field(
        1.0, ge=1, le=4, description="down-sample by up to this factor and back; 1 = off"
    )
    jpeg: int = Field(
        0, ge=0, le=95, description="re-encode as JPEG at quality from this to 95; 0 = off"
    )

    @field_validator("jpeg")
    @classmethod
    def _jpeg_quality(cls, v: int) -> int:
        if 0 < v < 10:
            raise ValueError("a JPEG quality below 10 destroys the image; use 10-95, or 0 (off)")
        return v


class ModelConfig(_Section):
    """The CNN: conv blocks, then dropout and dense layers, then one sigmoid unit."""

    filters: tuple[int, ...] = Field((16, 32, 64, 128), min_length=1, max_length=8)
    kernel_size: int = Field(3, ge=1, le=11)
    stride: int = Field(1, ge=1, le=4)
    padding: Literal["same", "valid"] = "same"
    pooling: Literal["max", "avg"] = "max"
    batch_norm: bool = True
    dropout: float = Field(0.3, ge=0, lt=1)
    dense_units: tuple[int, ...] = Field((64,), max_length=4)
    # Why: 930 labelled films of one collection teach that collection; conv blocks pretrained
    # on many hospitals' unlabelled X-rays are the largest lever on unseen sites
    # (pipeline.pretraining).
    init: str = Field(
        "scratch",
        min_length=1,
        description="scratch: random conv weights; or a pretrained encoder — a shipped one by "
        "name (pipeline/pretraining/weights) or an encoder.keras file made by `python -m "
        "pipeline pretrain`",
    )
    freeze_encoder_epochs: int = Field(
        0,
        ge=0,
        le=1000,
        description="epochs the pretrained conv blocks stay frozen (only the head learns) "
        "before all layers are fine-tuned; 0 = fine-tune from the start",
    )

    @model_validator(mode="after")
    def _freeze_needs_an_encoder(self) -> ModelConfig:
        if self.freeze_encoder_epochs and self.init == "scratch":
            raise ValueError(
                "freeze_encoder_epochs needs a pretrained encoder: set model.init to one (e.g. "
                "the shipped 'cxr-vicreg') or set freeze_encoder_epochs to 0"
            )
        return self

    @field_validator("filters", "dense_units")
    @classmethod
    def _positive_widths(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= n <= 1024 for n in v):
            raise ValueError(f"every width must be between 1 and 1024 (got {list(v)})")
        return v


class OptimConfig(_Section):
    """Optimiser and its hyper-parameters."""

    name: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-3, gt=0, le=1)
    epsilon: float = Field(1e-7, gt=0, le=1, description="adam/rmsprop numerical epsilon")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd momentum")


class TrainConfig(_Section):
    """Batching, length of training and class-imbalance handling."""

    batch_size: int = Field(32, ge=1, le=1024)
    epochs: int = Field(20, ge=1, le=1000)
    early_stopping_patience: int = Field(
        5, ge=0, le=100, description="epochs without val AUC gain before stopping (0 = off)"
    )
    imbalance: Literal["none", "class_weight", "oversample"] = "class_weight"
    # Why: with several sources the largest would otherwise dominate the loss, and the model
    # would learn its scanner and population first (see pipeline.training.inputs.source_weights).
    balance_sources: bool = Field(
        False,
        description="several data.path folders: each source weighs the same in the loss (per-"
        "image weights; within each class when imbalance is class_weight or oversample); "
        "no effect with one training folder",
    )


class EvalConfig(_Section):
    """How the operating threshold is chosen on validation, and the confidence intervals."""

    threshold_rule: Literal["who", "youden", "max_f1"] = Field(
        "who", description="who: highest specificity with sensitivity >= min_sensitivity"
    )
    min_sensitivity: float = Field(0.9, gt=0, le=1)
    bootstrap: int = Field(1000, ge=0, le=20000, description="bootstrap resamples for 95% CIs")
    calibration: Literal["none", "platt", "isotonic"] = Field(
        "none",
        description="map the network's output to a calibrated P(TB), fitted on validation",
    )
    # Why: a pooled validation AUC over several sources rewards knowing the largest one and
    # telling the collections apart (pipeline/evaluation/by_source.py).
    per_source: bool = Field(
        False,
        description="several data.path folders: choose the checkpoint on the mean per-source "
        "validation AUC and the threshold on a validation ROC in which every source weighs the "
        "same; no effect with one training folder",
    )


class RunConfig(_Section):
    """Everything a run needs. Frozen: derive a changed copy with :func:`override`."""

    name: str = Field("run", min_length=1, max_length=120)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _geometry_fits(self) -> RunConfig:
        side = final_feature_side(self.data.image_size, self.model)
        if side < 1:
            m = self.model
            raise ValueError(
                f"model: {len(m.filters)} blocks with kernel_size={m.kernel_size}, "
                f"stride={m.stride}, padding={m.padding!r} shrink a "
                f"{self.data.image_size}-px image to nothing; use fewer blocks, padding 'same', "
                "stride 1 or a larger image_size"
            )
        return self

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` items (``--set`` flags, lines of a form) as dotted overrides.

    VALUE is read as JSON when it parses (``5``, ``[8, 16]``, ``true``, ``null``), else kept as
    text; spaces around FIELD and VALUE are dropped and blank items skipped, wherever they were
    typed. Raises :class:`ConfigError` naming every item that has no ``=``.
    """
    out: dict[str, Any] = {}
    problems = []
    for item in items:
        if not item.strip():
            continue
        field, sep, raw = item.partition("=")
        if not sep or not field.strip():
            problems.append(f"{item.strip()!r}: write FIELD=VALUE, e.g. model.pooling=avg")
            continue
        try:
            out[field.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[field.strip()] = raw.strip()
    if problems:
        raise ConfigError(problems)
    return out


def absolute_paths(paths: str | Sequence[str], roots: Sequence[str | Path] = ()) -> str | list[str]:
    """Data folders made absolute (``~`` expanded), one kept a string and several a list, so a
    worker started in another directory finds the same folders.

    A relative folder that does not exist from the working directory is looked for under each of
    ``roots`` in turn (the data roots, :func:`pipeline.data.catalog.data_roots`), so a preset can
    name its sources (``tb-cxr``); one found nowhere is made absolute from the working directory
    and left for the scan to report.
    """

    def one(path: str) -> str:
        p = Path(path).expanduser()
        if not p.is_absolute() and not p.is_dir():
            for root in roots:
                if (Path(root) / p).is_dir():
                    return str((Path(root) / p).resolve())
        return str(p.resolve())

    if isinstance(paths, str):
        return one(paths)
    return [one(p) for p in paths]


def data_root(path: str | list[str] | tuple[str, ...]) -> str:
    """:attr:`DataConfig.root` for a ``data.path`` value as stored in a config (string or list)."""
    if isinstance(path, str):
        return path
    if len(path) == 1:
        return path[0]
    return os.path.commonpath([os.path.abspath(os.path.expanduser(p)) for p in path])


def final_feature_side(image_size: int, model: ModelConfig) -> int:
    """Side of the last conv map: every block is a conv (stride, padding), all but the last are
    followed by a 2x2 pool; the last conv map feeds global pooling (and Grad-CAM). 0 = vanished."""
    side = image_size
    for i in range(len(model.filters)):
        if model.padding == "valid":
            side = (side - model.kernel_size) // model.stride + 1
        else:
            side = -(-side // model.stride)
        if i < len(model.filters) - 1:
            side //= 2
        if side < 1:
            return 0
    return side


def _format_errors(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "config"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        given = e.get("input")
        if loc != "config" and not isinstance(given, dict):
            msg += f" (got {given!r})"
        problems.append(f"{loc}: {msg}")
    return problems


def make_config(values: dict[str, Any]) -> RunConfig:
    """Validate a nested dict into a :class:`RunConfig`, raising :class:`ConfigError`."""
    try:
        return RunConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def dotted_to_nested(changes: dict[str, Any]) -> dict[str, Any]:
    """``{"model.pooling": "avg"}`` -> ``{"model": {"pooling": "avg"}}``."""
    nested: dict[str, Any] = {}
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


def override(cfg: RunConfig, changes: dict[str, Any]) -> RunConfig:
    """A validated copy of ``cfg`` with ``changes`` (nested, or dotted keys) applied."""
    nested = dotted_to_nested({k: v for k, v in changes.items() if "." in k})
    nested = _deep_merge(nested, {k: v for k, v in changes.items() if "." not in k})
    return make_config(_deep_merge(cfg.model_dump(mode="json"), nested))


# The screening preset's sources: names of dataset folders under the data roots
# (pipeline.data.catalog.locate finds them there when they are not under the working directory).
SCREENING_SOURCES = ("tb-cxr", "nlm-224", "montgomery")

# Presets: each carries a one-line *why*. Values not named keep the RunConfig defaults.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "smoke": (
        "finishes in seconds on a laptop CPU: proves the whole path works, not that it learns",
        {
            "name": "smoke",
            "data": {"image_size": 64},
            "model": {"filters": (8, 16), "dense_units": (16,)},
            "train": {"epochs": 1, "batch_size": 32, "early_stopping_patience": 0},
            "eval": {"bootstrap": 200},
        },
    ),
    "baseline": (
        "the reference CNN on the lungs alone: 4 conv blocks (16-128 filters), batch norm, Adam "
        "1e-3, 128 px, everything outside the lungs set to black by the shipped segmenter; up to "
        "30 epochs with patience 10; chosen by the generalisation suite (mean external AUC 0.69 "
        "vs 0.57 for baseline-v1, paired t p = 0.03, 3 seeds; EXPERIMENTS.md)",
        {
            "name": "baseline",
            "data": {"roi": "lung_mask"},
            "train": {"epochs": 30, "early_stopping_patience": 10},
        },
    ),
    "screening": (
        "the model meant for serving: the lungs-only baseline trained on tb-cxr, nlm-224 and "
        "Montgomery together (found under the data roots), pooled as they come; of the recipes "
        "measured leave-one-source-out (EXPERIMENTS.md) the only one no worse than one source "
        "on either held-out collection (nlm-224 AUC 0.66 vs 0.62, sensitivity 0.66 vs 0.45, p = "
        "0.03); balancing the sources or choosing on per-source validation did not help; its "
        "own figure for a new hospital: `python -m pipeline loso RUN`",
        {
            "name": "screening",
            "data": {"roi": "lung_mask", "path": SCREENING_SOURCES},
            "train": {"epochs": 30, "early_stopping_patience": 10},
        },
    ),
    "baseline-v1": (
        "the reference CNN before the generalisation suite, on the whole film: AUC 0.98 on its "
        "own collection but 0.57 on other hospitals' X-rays (it learned the collection's marks); "
        "kept to reproduce earlier results",
        {"name": "baseline-v1", "train": {"epochs": 30, "early_stopping_patience": 10}},
    ),
}


def preset(name: str, /, **changes: Any) -> RunConfig:
    """A preset's config with optional overrides (nested dicts or dotted keys)."""
    if name not in PRESETS:
        raise ConfigError([f"preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}"])
    return override(make_config(PRESETS[name][1]), changes)


def load_config_file(path: str | Path) -> RunConfig:
    """Read a config JSON written with a run (``config.json``) or by hand."""
    p = Path(path)
    try:
        values = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError([f"config file {p}: cannot read it as JSON ({err})"]) from None
    return make_config(values)
