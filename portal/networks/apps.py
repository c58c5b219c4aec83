from django.apps import AppConfig


class NetworksConfig(AppConfig):
    name = "portal.networks"
    label = "networks"
