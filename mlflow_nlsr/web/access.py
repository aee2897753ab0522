"""Who is looking at a page and what they may do: open (``--app-name nlsr``) or MLflow login (``nlsr-auth``).

Without a login there is no signed-in user, so nobody can approve or reject from a page: the buttons
need ``mlflow server --app-name nlsr-auth``. With MLflow's basic-auth app, reading a version's page
needs READ on its registered model and deciding needs MANAGE, resolved by MLflow's own permission
functions (users, roles and the configured default permission), admins being allowed everything.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class OpenAccess:
    """No login: everyone reads, nobody decides."""

    login = False

    def user(self) -> str | None:
        """The signed-in user (none without a login)."""
        return None

    def can_read(self, name: str) -> bool:
        """Whether the current user may read registered model ``name``."""
        return True

    def can_manage(self, name: str) -> bool:
        """Whether the current user may approve or reject versions of ``name``."""
        return False

    def csrf_token(self) -> str:
        """A token for a POST form (forms are never shown without a login)."""
        return ""

    def check_csrf(self, token: str | None) -> bool:
        """Whether a form's token is valid."""
        return False


class BasicAuthAccess(OpenAccess):
    """MLflow's basic-auth app decides: READ to see a model's pages, MANAGE to approve or reject."""

    login = True

    def user(self) -> str | None:
        from flask import g

        user = getattr(g, "mlflow_authenticated_user", None)  # set by the login check (web.auth)
        return str(user) if user else None

    def _permission(self, name: str) -> Any:
        from flask import g

        cache: dict[str, Any] = g.setdefault("nlsr_permissions", {})
        if name not in cache:
            from mlflow.server import auth as mlflow_auth

            try:
                if mlflow_auth.sender_is_admin():
                    cache[name] = "admin"
                else:
                    cache[name] = mlflow_auth._get_registered_model_permission(name)
            except Exception as exc:  # noqa: BLE001 - an unknown model or a store error denies
                log.info("nlsr: no permission on %s for %s: %s", name, self.user(), exc)
                cache[name] = None
        return cache[name]

    def can_read(self, name: str) -> bool:
        perm = self._permission(name)
        return perm == "admin" or bool(perm is not None and perm.can_read)

    def can_manage(self, name: str) -> bool:
        perm = self._permission(name)
        return perm == "admin" or bool(perm is not None and perm.can_manage)

    def csrf_token(self) -> str:
        from flask_wtf.csrf import generate_csrf

        return str(generate_csrf())

    def check_csrf(self, token: str | None) -> bool:
        from flask_wtf.csrf import validate_csrf
        from wtforms.validators import ValidationError

        try:
            validate_csrf(token)
        except ValidationError:
            return False
        return True
