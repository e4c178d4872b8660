"""One image -> model input (artefacts, lung ROI, intensity, enhancement), and the array cache.

May import the root modules, imaging, data and lungs; training and serving both call it.
"""
