"""Lung-field segmentation: a compact U-Net the project trains, ships and applies everywhere.

- :mod:`~pipeline.lungs.masks` — Dice / IoU, post-processing, plausibility, outline, ROI box.
- :mod:`~pipeline.lungs.quality` — how far a mask can be trusted, from the probability map.
- :mod:`~pipeline.lungs.unet` — the network and its Dice + BCE loss.
- :mod:`~pipeline.lungs.data` — image / mask pairs (lung-masks layout or phantoms), augmentation
  (geometric jitter, opacities drawn into the lungs).
- :mod:`~pipeline.lungs.train` — training recipes, held-out-source scoring and the model card.
- :mod:`~pipeline.lungs.segmenter` — the shipped model: load it, segment any X-ray.
- :mod:`~pipeline.lungs.roi` — the classifier's region of interest (``data.roi``).
- :mod:`~pipeline.lungs.view` — the view check (upright, turned, upside down, part of a film).

May import the root modules, :mod:`pipeline.imaging` and :mod:`pipeline.data`; its command line
(``python -m pipeline lungs ...``) is :mod:`pipeline.cli.lungs`.
"""
