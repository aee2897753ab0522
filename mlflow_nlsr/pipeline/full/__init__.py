"""Full-weight NLSR streamed tensor by tensor from (sharded) safetensors checkpoints.

``realign.py`` runs the two passes, ``inputs.py`` reads the three checkpoints (a PEFT adapter merged per
tensor), ``scoring.py`` builds each module's mask, ``activations.py`` captures ActSVD Gram matrices and
``report.py`` writes the report and plot.
"""

from mlflow_nlsr.pipeline.full.realign import realign_full

__all__ = ["realign_full"]
