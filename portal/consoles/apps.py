from django.apps import AppConfig


class ConsolesConfig(AppConfig):
    name = "portal.consoles"
    label = "consoles"
