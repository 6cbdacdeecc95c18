"""The trainer: ``TrainConfig`` (every option), ``train(cfg)`` (one readable loop) and the ``mtssl-train`` CLI.

Import the submodules (``mtssl.train.loop``, ``mtssl.train.config``); this package module stays light.
"""
