"""Full-weight NLSR streamed tensor by tensor from (sharded) safetensors checkpoints.

``realign.py`` runs the two passes (``realign_full``), ``inputs.py`` reads the three checkpoints (a PEFT
adapter merged per tensor), ``scoring.py`` holds the mask tools the scorers share, ``activations.py``
captures ActSVD Gram matrices, ``stats.py`` holds what pass 1 measured and ``report.py`` writes the
report and plot.
"""
