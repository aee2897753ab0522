"""mlflow-nlsr executor ``ray``: one job's realign + gates as a Ray task (see docs/scale-out.md)."""

from mlflow_nlsr_ray.executor import RayExecutor

__all__ = ["RayExecutor"]
