"""Realignment methods, one registered class per file (entry-point group ``mlflow_nlsr.methods``).

``nlsr`` (neuron transplant, the default), ``safelora`` (the official SafeLoRA projection) and
``safelora-nlsr`` (SafeLoRA as the NLSR repository re-implemented it). Adding a method is one file with
a :class:`~mlflow_nlsr.pipeline.methods.base.Method` subclass plus one entry point in ``setup.cfg``.
"""

from mlflow_nlsr.pipeline.methods.base import LoraRun, Method, MethodOutcome

__all__ = ["LoraRun", "Method", "MethodOutcome"]
