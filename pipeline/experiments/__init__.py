"""Experiment suites: what a suite is (spec), the shipped catalogue (suites), expanding and
queueing one (plan), and its summary with paired tests (summary).

May import the root modules, :mod:`pipeline.evaluation` and :mod:`db`; never TensorFlow.
"""
