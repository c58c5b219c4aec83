from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "portal.accounts"
    label = "accounts"
    verbose_name = "People, namespaces and keys"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from portal.accounts.notify import access_changed_now

        def close_sockets(sender, request, user, **kwargs):  # type: ignore[no-untyped-def]
            # A logged-out session must not keep a live websocket open.
            if user is not None:
                access_changed_now([user.pk])

        user_logged_out.connect(close_sockets, dispatch_uid="sfcloud-close-sockets")
