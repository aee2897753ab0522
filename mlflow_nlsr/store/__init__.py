"""mlflow_nlsr.store."""
