"""A stored run answers one image: the predictor, the shared assessment, the OOD check.

May import every stage up to explain and :mod:`db`; the apps and the command line call it.
"""
