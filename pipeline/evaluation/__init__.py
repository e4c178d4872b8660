"""Numbers about scores: metrics with intervals and thresholds, calibration, paired comparisons.

Pure numpy and scikit-learn: may import the root modules and :mod:`pipeline.data` (splits) only.
"""
