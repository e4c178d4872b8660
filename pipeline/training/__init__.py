"""One run end to end: tf.data inputs, appearance augmentation, fit with its callbacks, events.

May import every stage below it (imaging to serving) and :mod:`db`; runs and suites call it.
"""
