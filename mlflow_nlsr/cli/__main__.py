"""``python -m mlflow_nlsr.cli`` (used to start worker processes)."""

from mlflow_nlsr.cli import main

main()
