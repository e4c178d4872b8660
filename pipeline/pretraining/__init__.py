"""Self-supervised pretraining of the classifier's encoder on unlabelled chest X-rays (VICReg).

May import every stage up to training and :mod:`db`; the command line calls it (``pretrain``).
"""
