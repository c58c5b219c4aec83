"""People: accounts, their memberships and roles, and their personal API
tokens. The admin pages call these (synchronous: forms and password
validation are); every change, and every refused attempt, is audited here.

Changes take the Actor asking; readers take anything with roles.
"""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from cloudstate import validation
from cloudstate.vocabulary import ObjectKind
from portal.accounts import audit, keys, notify
from portal.accounts.actor import Actor
from portal.accounts.models import (
    SYSTEM_NAMESPACE,
    AuditAction,
    Membership,
    Namespace,
    PersonalToken,
    Role,
)
from portal.accounts.roles import RoleChecks
from portal.cloud.errors import BadRequest, Conflict, Forbidden, NotFound

USER = ObjectKind.USER
MEMBERSHIP = ObjectKind.MEMBERSHIP
TOKEN = ObjectKind.TOKEN


def _audited(actor: Actor, namespace: str | None, action: str, kind: str, *,
             object_id: Any = "", object_name: str = ""
             ) -> AbstractContextManager[audit.Entry]:
    return audit.recording_now(actor, namespace, action, kind, object_id=str(object_id),
                               object_name=object_name)


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


def create_user(actor: Actor, username: str, password: str, *, namespace: str | None = None,
                role: str = Role.MEMBER) -> AbstractBaseUser:
    with _audited(actor, namespace, AuditAction.CREATE, USER, object_name=username) as entry:
        actor.require_system_admin("create people")
        try:
            username = validation.username(username)
        except validation.ValidationError as exc:
            raise BadRequest(str(exc)) from None
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


def set_active(actor: Actor, user_id: int, active: bool) -> AbstractBaseUser:
    action = AuditAction.ENABLE if active else AuditAction.DISABLE
    with _audited(actor, None, action, USER, object_id=user_id) as entry:
        user = get_user(actor, user_id)
        entry.object_name = user.get_username()
        if not active and user.pk == actor.user_id:
            raise BadRequest("you can't disable your own account")
        if not active and _is_last_system_admin(user):
            raise BadRequest("this is the last admin of the system namespace")
        user.is_active = active
        user.save(update_fields=["is_active"])
    notify.access_changed_now([user.pk])
    return user


def delete_user(actor: Actor, user_id: int) -> str:
    """Delete an account, its memberships and its personal tokens; returns
    the name it had. The audit trail keeps who they were: its rows name
    people by their username, and this deletion's row says which account
    (its id) and what roles it held. Their sessions, pages and consoles end."""
    with _audited(actor, None, AuditAction.DELETE, USER, object_id=user_id) as entry:
        user = get_user(actor, user_id)
        name = user.get_username()
        entry.object_name = name
        if user.pk == actor.user_id:
            raise BadRequest("you can't delete your own account")
        if _is_last_system_admin(user):
            raise BadRequest("this is the last admin of the system namespace: make someone "
                             "else an admin of it first")
        roles = [f"{m.role} of {m.namespace.name}" for m in
                 Membership.objects.filter(user=user).select_related("namespace")
                 .order_by("namespace__name")]
        entry.detail = f"account {user.pk}, " + (", ".join(roles) if roles else "no roles")
        with transaction.atomic():
            user.delete()
    notify.access_changed_now([user_id])
    return name


def reset_password(actor: Actor, user_id: int, password: str | None = None) -> str:
    """Set a new password (a generated one when none is given) and return
    it, to be shown once. The person's sessions end."""
    with _audited(actor, None, AuditAction.RESET_PASSWORD, USER, object_id=user_id) as entry:
        user = get_user(actor, user_id)
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


def set_membership(actor: Actor, namespace: str, username: str, role: str) -> Membership:
    """Give a person a role in a namespace (adding them if they are not in it)."""
    with _audited(actor, namespace, AuditAction.SET_ROLE, MEMBERSHIP,
                  object_name=username) as entry:
        actor.require_admin(namespace, f"namespace {namespace}")
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


def remove_membership(actor: Actor, namespace: str, user_id: int) -> None:
    with _audited(actor, namespace, AuditAction.REMOVE, MEMBERSHIP, object_id=user_id) as entry:
        actor.require_admin(namespace, f"namespace {namespace}")
        membership = Membership.objects.filter(namespace__name=namespace, user_id=user_id) \
            .select_related("user").first()
        if membership is None:
            raise NotFound(f"user {user_id} is not a member of namespace {namespace}")
        entry.object_name = membership.user.get_username()
        if namespace == SYSTEM_NAMESPACE and _is_last_system_admin(membership.user):
            raise BadRequest("this is the last admin of the system namespace")
        membership.delete()
    notify.access_changed_now([user_id])


# --- a person's own account --------------------------------------------------------------------


def _own_account(actor: Actor) -> AbstractBaseUser:
    user = get_user_model().objects.filter(pk=actor.user_id).first() \
        if actor.user_id is not None else None
    if user is None:
        raise Forbidden("only a person has tokens and a password of their own")
    return user


def create_token(actor: Actor, name: str, days: int, default_namespace: str = ""
                 ) -> tuple[PersonalToken, str]:
    """Make a token for the Actor; returns it and its secret (shown once,
    never stored)."""
    with _audited(actor, default_namespace or None, AuditAction.CREATE, TOKEN,
                  object_name=name) as entry:
        user = _own_account(actor)
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


def revoke_token(actor: Actor, token_id: int) -> None:
    """Revoke one of the Actor's own tokens (anyone else's is not found)."""
    with _audited(actor, None, AuditAction.REVOKE, TOKEN, object_id=token_id) as entry:
        token = PersonalToken.objects.filter(pk=token_id, user_id=actor.user_id).first() \
            if actor.user_id is not None else None
        if token is None:
            raise NotFound(f"token {token_id} not found")
        entry.object_name = token.name
        if token.revoked is None:
            token.revoked = timezone.now()
            token.save(update_fields=["revoked"])


def change_own_password(actor: Actor, form: PasswordChangeForm) -> AbstractBaseUser:
    """Save a valid password-change form of the Actor's own account."""
    with _audited(actor, None, AuditAction.CHANGE_PASSWORD, USER,
                  object_id=actor.user_id or "", object_name=actor.name):
        if form.user.pk != actor.user_id:
            raise Forbidden("a person may only change their own password here")
        return form.save()
