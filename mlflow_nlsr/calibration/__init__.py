"""Strength search: a ladder of realignment options climbed under a quick gate, confirmed by the full gate.

A layer between :mod:`mlflow_nlsr.service` and the adapters (``pipeline``, ``gates``): it receives the
functions it needs (realign, gate, audit) and never imports the service.
"""
