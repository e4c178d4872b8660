"""Dataset folders: scanning, near-duplicates, the catalogue of folders, splits, phantoms, overlap.

May import the root modules and :mod:`pipeline.imaging`; nothing here preprocesses or trains.
"""
