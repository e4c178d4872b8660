"""Heatmaps of what drove a score (Grad-CAM, LIME, SHAP) and how faithful they are.

May import the root modules only: a heatmap is computed from a model and an image array.
"""
