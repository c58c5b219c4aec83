"""People: accounts, their memberships and roles, and their personal API
tokens. The admin pages call these (synchronous: forms and password
validation are); every change, and every refused attempt, is audited.

``who`` is the portal Access of the person asking.
"""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from cloudstate import validation
from portal.accounts import audit, keys, notify
from portal.accounts.models import (
    SYSTEM_NAMESPACE,
    Membership,
    Namespace,
    PersonalToken,
    Role,
)
from portal.accounts.roles import RoleChecks
from portal.cloud.errors import BadRequest, Conflict, Forbidden, NotFound

USER = "user"
MEMBERSHIP = "membership"
TOKEN = "token"  # noqa: S105 - an audit object kind


def _audited(who: Any, namespace: str | None, action: str, kind: str, *, object_id: Any = "",
             object_name: str = "", source: str | None = None
             ) -> AbstractContextManager[audit.Entry]:
    return audit.recording_now(who, namespace, action, kind, object_id=str(object_id),
                               object_name=object_name, source=source)


def _check_password(password: str, user: AbstractBaseUser | None = None) -> None:
    try:
        password_validation.validate_password(password, user)
    except DjangoValidationError as exc:
        raise BadRequest("password: " + " ".join(exc.messages)) from None


def generate_password() -> str:
    return secrets.token_urlsafe(12)


# --- accounts --------------------------------------------------------------------------------


def get_user(who: RoleChecks, user_id: int) -> AbstractBaseUser:
    """System admins may manage any account; nobody else may see the list."""
    who.require_system_admin("manage people")
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def create_user(who: RoleChecks, username: str, password: str, *, namespace: str | None = None,
                role: str = Role.MEMBER, source: str | None = None) -> AbstractBaseUser:
    with _audited(who, namespace, "create", USER, object_name=username, source=source) as entry:
        who.require_system_admin("create people")
        username = (username or "").strip()
        if not username or len(username) > 150:
            raise BadRequest("username: give 1-150 characters")
        model = get_user_model()
        probe = model(username=username)
        _check_password(password, probe)
        if namespace:
            _check_role(role)
            if not Namespace.objects.filter(name=namespace).exists():
                raise NotFound(f"namespace {namespace} not found")
        try:
            with transaction.atomic():
                if model.objects.filter(username__iexact=username).exists():
                    raise Conflict(f"a user named {username} already exists")
                user = model.objects.create_user(username=username, password=password)
                if namespace:
                    Membership.objects.create(user=user,
                                              namespace=Namespace.objects.get(name=namespace),
                                              role=role)
        except IntegrityError:
            raise Conflict(f"a user named {username} already exists") from None
        entry.object_id = str(user.pk)
        entry.detail = f"{role} of {namespace}" if namespace else ""
    return user


def set_active(who: RoleChecks, user_id: int, active: bool, *,
               source: str | None = None) -> AbstractBaseUser:
    action = "enable" if active else "disable"
    with _audited(who, None, action, USER, object_id=user_id, source=source) as entry:
        user = get_user(who, user_id)
        entry.object_name = user.get_username()
        if not active and user.get_username() == audit.actor_name(who):
            raise BadRequest("you can't disable your own account")
        if not active and _is_last_system_admin(user):
            raise BadRequest("this is the last admin of the system namespace")
        user.is_active = active
        user.save(update_fields=["is_active"])
    notify.access_changed_now([user.pk])
    return user


def reset_password(who: RoleChecks, user_id: int, password: str | None = None, *,
                   source: str | None = None) -> str:
    """Set a new password (a generated one when none is given) and return
    it, to be shown once. The person's sessions end."""
    with _audited(who, None, "reset-password", USER, object_id=user_id,
                  source=source) as entry:
        user = get_user(who, user_id)
        entry.object_name = user.get_username()
        password = password or generate_password()
        _check_password(password, user)
        user.set_password(password)
        user.save(update_fields=["password"])
    notify.access_changed_now([user.pk])
    return password


# --- memberships -----------------------------------------------------------------------------


def _check_role(role: str) -> str:
    if role not in Role.values:
        raise BadRequest(f"role: must be one of {', '.join(Role.values)}")
    return role


def _is_last_system_admin(user: AbstractBaseUser) -> bool:
    admins = Membership.objects.filter(namespace__name=SYSTEM_NAMESPACE, role=Role.ADMIN,
                                       user__is_active=True)
    return admins.filter(user=user).exists() and admins.count() == 1


def members(who: RoleChecks, namespace: str) -> list[Membership]:
    if not who.can_admin(namespace):
        # Readers may not list people; outsiders may not learn it exists.
        who.require_read(namespace, f"namespace {namespace}")
        raise Forbidden(f"only an admin of namespace {namespace} may see its members")
    return list(Membership.objects.filter(namespace__name=namespace)
                .select_related("user").order_by("user__username"))


def set_membership(who: RoleChecks, namespace: str, username: str, role: str, *,
                   source: str | None = None) -> Membership:
    """Give a person a role in a namespace (adding them if they are not in it)."""
    with _audited(who, namespace, "set-role", MEMBERSHIP, object_name=username,
                  source=source) as entry:
        who.require_read(namespace, f"namespace {namespace}")
        who.require_admin(namespace, f"namespace {namespace}")
        _check_role(role)
        target = Namespace.objects.filter(name=namespace).first()
        if target is None:
            raise NotFound(f"namespace {namespace} not found")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise NotFound(f"there is no user named {username}")
        if namespace == SYSTEM_NAMESPACE and role != Role.ADMIN and _is_last_system_admin(user):
            raise BadRequest("this is the last admin of the system namespace")
        membership, created = Membership.objects.update_or_create(
            user=user, namespace=target, defaults={"role": role})
        entry.object_id = str(user.pk)
        entry.detail = f"{'added as' if created else 'now'} {role}"
    notify.access_changed_now([user.pk])
    return membership


def remove_membership(who: RoleChecks, namespace: str, user_id: int, *,
                      source: str | None = None) -> None:
    with _audited(who, namespace, "remove", MEMBERSHIP, object_id=user_id,
                  source=source) as entry:
        who.require_read(namespace, f"namespace {namespace}")
        who.require_admin(namespace, f"namespace {namespace}")
        membership = Membership.objects.filter(namespace__name=namespace, user_id=user_id) \
            .select_related("user").first()
        if membership is None:
            raise NotFound(f"user {user_id} is not a member of namespace {namespace}")
        entry.object_name = membership.user.get_username()
        if namespace == SYSTEM_NAMESPACE and _is_last_system_admin(membership.user):
            raise BadRequest("this is the last admin of the system namespace")
        membership.delete()
    notify.access_changed_now([user_id])


# --- personal tokens -------------------------------------------------------------------------


def create_token(user: AbstractBaseUser, name: str, days: int, default_namespace: str = "", *,
                 source: str | None = None) -> tuple[PersonalToken, str]:
    """Make a token; returns it and its secret (shown once, never stored)."""
    with _audited(user, default_namespace or None, "create", TOKEN, object_name=name,
                  source=source) as entry:
        name = (name or "").strip()
        if not name or len(name) > 63:
            raise BadRequest("name: give the token a name of 1-63 characters")
        limit = settings.PERSONAL_TOKEN_MAX_DAYS
        if not isinstance(days, int) or not 1 <= days <= limit:
            raise BadRequest(f"expiry: between 1 and {limit} days")
        if default_namespace:
            validation.namespace_name(default_namespace)
        secret = keys.new_personal_secret()
        token = PersonalToken.objects.create(
            user=user, name=name, digest=keys.digest(secret),
            prefix=secret[:len(keys.PERSONAL_PREFIX) + 4], default_namespace=default_namespace,
            expires=timezone.now() + timedelta(days=days))
        entry.object_id = str(token.pk)
        entry.detail = f"expires {token.expires:%Y-%m-%d}"
    return token, secret


def revoke_token(user: AbstractBaseUser, token_id: int, *, source: str | None = None) -> None:
    with _audited(user, None, "revoke", TOKEN, object_id=token_id, source=source) as entry:
        token = PersonalToken.objects.filter(pk=token_id, user=user).first()
        if token is None:
            raise NotFound(f"token {token_id} not found")
        entry.object_name = token.name
        if token.revoked is None:
            token.revoked = timezone.now()
            token.save(update_fields=["revoked"])

