"""mlflow_nlsr.io."""
