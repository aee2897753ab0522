"""mlflow-nlsr: Neuron-Level Safety Realignment of fine-tuned LLMs as an MLflow model-registry plugin."""

__version__ = "0.1.0"

__all__ = ["__version__"]
