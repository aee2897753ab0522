"""Server-rendered review pages under ``/nlsr/`` (Flask + Jinja2 shipped as package data, no JavaScript).

``app.py`` registers them on MLflow's Flask app; ``web.auth`` puts them behind MLflow's basic-auth login.
"""

from __future__ import annotations

from mlflow_nlsr.web.views import WebContext, register

__all__ = ["WebContext", "register"]
