"""mlflow_nlsr.gates."""
