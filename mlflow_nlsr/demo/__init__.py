"""mlflow_nlsr.demo."""
