"""Scorers: how the safety-critical neurons of the reference update are found (spec §1.4).

One registered class per file (entry-point group ``mlflow_nlsr.scorers``), each with its LoRA-mode
variant (a mask per LoRA factor) and its full-weight variant (a mask per dense module): ``actsvd``,
``magnitude``, ``weight-lowrank``, ``random``. Adding a scorer is one file with a
:class:`~mlflow_nlsr.pipeline.scorers.base.Scorer` subclass plus one entry point in ``setup.cfg``.
"""

from mlflow_nlsr.pipeline.scorers.base import (
    Evidence,
    FactorContext,
    FullScoring,
    ModuleContext,
    Scorer,
    scorer_for,
)

__all__ = ["Evidence", "FactorContext", "FullScoring", "ModuleContext", "Scorer", "scorer_for"]
