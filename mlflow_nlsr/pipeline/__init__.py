"""mlflow_nlsr.pipeline."""
