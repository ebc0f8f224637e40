"""Training: the LightningModule, losses, callbacks, loggers, sweeps and resume.

:func:`segbench.training.train.train` is what ``python train.py`` runs.
"""
