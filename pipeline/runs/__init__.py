"""What happens to stored runs: the worker that trains and evaluates queued jobs, run management
(archive, delete, suite progress) and external evaluation and site calibration.

May import every stage below it and :mod:`db`; the command line and the dashboard call it.
"""
