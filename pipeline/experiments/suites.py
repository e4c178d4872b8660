"""The catalogue of suites that ship with the project: the eight of the brief and the
generalisation suites, each a :class:`~pipeline.experiments.spec.SuiteSpec` with its question."""

from __future__ import annotations

from pipeline.config import ENHANCEMENTS
from pipeline.experiments.spec import SuiteSpec

_AT_128 = {"data.image_size": 128}
# The generalisation suite's external sets (../shared/data, beside the checkout) and its
# appearance augmentation: what a 224-px JPEG copy from a brighter, blurrier machine looks like.
GENERALISATION_EXTERNAL = ("../shared/data/nlm-224", "../shared/data/montgomery")
APPEARANCE = {
    "augment.gamma": 0.3,
    "augment.contrast": 0.3,
    "augment.blur": 1.0,
    "augment.noise": 0.03,
    "augment.resample": 2.0,
    "augment.jpeg": 40,
}

SUITES: dict[str, SuiteSpec] = {
    spec.name: spec
    for spec in (
        SuiteSpec(
            name="baseline",
            question="the reference CNN alone: the yardstick every other suite is read against, "
            "and, over several seeds, how much a result moves by chance",
            base=_AT_128,
            settings=[{}],
        ),
        SuiteSpec(
            name="optimizers",
            question="does the optimiser matter? SGD (momentum 0.9) at lr 1e-2, Adam at 1e-3 and "
            "RMSprop (no momentum) at 1e-3: each at its customary learning rate, because one "
            "shared rate would favour whichever optimiser it happens to suit",
            base=_AT_128,
            settings=[
                {"optim.name": "sgd", "optim.learning_rate": 1e-2, "optim.momentum": 0.9},
                {"optim.name": "adam", "optim.learning_rate": 1e-3},
                {"optim.name": "rmsprop", "optim.learning_rate": 1e-3},
            ],
        ),
        SuiteSpec(
            name="pooling",
            question="max or average pooling between conv blocks: which keeps small, faint "
            "TB lesions visible to the classifier?",
            base=_AT_128,
            factors={"model.pooling": ["max", "avg"]},
        ),
        SuiteSpec(
            name="conv-geometry",
            question="kernel size (3/5/7), padding (same/valid) and stride (1/2): each changed "
            "alone from the baseline (5 settings); mode grid crosses them (12 cells, those with "
            "valid padding and stride 2 cannot fit 128 px and are skipped)",
            base=_AT_128,
            factors={
                "model.kernel_size": [3, 5, 7],
                "model.padding": ["same", "valid"],
                "model.stride": [1, 2],
            },
            mode="one_at_a_time",
        ),
        SuiteSpec(
            name="hyperparams",
            question="which learning rate, Adam epsilon, batch size and epoch budget? a seeded "
            "random draw of 12 of the 180 grid cells, since random search finds good regions "
            "at a fraction of a full grid's cost",
            base=_AT_128,
            factors={
                "optim.learning_rate": [1e-4, 3e-4, 1e-3, 3e-3],
                "optim.epsilon": [1e-8, 1e-7, 1e-6, 1e-5, 1e-4],
                "train.batch_size": [16, 32, 64],
                "train.epochs": [10, 20, 30],
            },
            mode="random",
            max_runs=12,
        ),
        SuiteSpec(
            name="enhancement",
            question="does contrast enhancement before the CNN help: none, contrast stretching, "
            "histogram equalisation or CLAHE?",
            base=_AT_128,
            factors={"data.enhancement": list(ENHANCEMENTS)},
        ),
        SuiteSpec(
            name="width",
            question="how wide must the CNN be: 8-64, 16-128 (baseline) or 32-256 filters; "
            "where does extra capacity stop paying for its compute?",
            base=_AT_128,
            factors={
                "model.filters": [[8, 16, 32, 64], [16, 32, 64, 128], [32, 64, 128, 256]],
            },
        ),
        SuiteSpec(
            name="generalisation",
            question="which change makes the model find TB on X-rays from other hospitals? each "
            "shortcut remedy alone against the baseline (artefacts inpainted or cropped, "
            "intensity standardised, appearance augmentation, lungs only), then all together, "
            "and the two that helped together; read by external AUC and sensitivity on nlm-224 "
            "and Montgomery, over 3 seeds",
            # Each remedy against the whole-film model it was measured against.
            preset="baseline-v1",
            base={**_AT_128, "data.external": list(GENERALISATION_EXTERNAL)},
            settings=[
                {},
                {"data.artefacts": "inpaint"},
                {"data.artefacts": "crop_border"},
                {"data.intensity": "percentile"},
                {"data.intensity": "hist_match"},
                APPEARANCE,
                {"data.roi": "lung_mask"},
                {
                    "data.roi": "lung_mask",
                    "data.artefacts": "inpaint",
                    "data.intensity": "hist_match",
                    **APPEARANCE,
                },
                # The two remedies that each raised the external AUC without costing internal
                # AUC below 0.97, on the first pass of this suite (EXPERIMENTS.md).
                {"data.roi": "lung_mask", "data.intensity": "hist_match"},
            ],
        ),
        SuiteSpec(
            name="pretraining",
            question="does an encoder pretrained on unlabelled chest X-rays from many hospitals "
            "(model.init=cxr-vicreg, python -m pipeline pretrain) find TB better on X-rays from "
            "other hospitals? the lungs-only baseline from scratch against the pretrained "
            "encoder fine-tuned from the start, frozen for 5 epochs first, and frozen "
            "throughout (a head on its features); read by external AUC and sensitivity on "
            "nlm-224 and Montgomery, over 3 seeds",
            base={**_AT_128, "data.external": list(GENERALISATION_EXTERNAL)},
            settings=[
                {},
                {"model.init": "cxr-vicreg"},
                {"model.init": "cxr-vicreg", "model.freeze_encoder_epochs": 5},
                {"model.init": "cxr-vicreg", "model.freeze_encoder_epochs": 30},
            ],
        ),
        SuiteSpec(
            name="input-size",
            question="does resolution matter: 128, 224 or 512 px, at about 3x and 16x the "
            "compute of 128 px?",
            factors={"data.image_size": [128, 224, 512]},
        ),
    )
}
