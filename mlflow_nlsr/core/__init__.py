"""mlflow_nlsr.core."""
