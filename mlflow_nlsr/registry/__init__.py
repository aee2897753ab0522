"""mlflow_nlsr.registry."""
