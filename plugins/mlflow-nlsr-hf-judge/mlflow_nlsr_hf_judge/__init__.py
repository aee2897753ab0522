"""The ``hf-classifier`` judge for mlflow-nlsr's gates: a Hugging Face classifier or guard model.

Registered in the ``mlflow_nlsr.judges`` entry-point group by this distribution's pyproject.toml; the
core package never imports it (``mlflow nlsr gate --judge hf-classifier`` finds it by name).
"""

from mlflow_nlsr_hf_judge.judge import HFClassifierJudge

__all__ = ["HFClassifierJudge"]
