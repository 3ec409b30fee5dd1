from django.apps import AppConfig


class UnifiedDbConfig(AppConfig):
    name = "unified_db"
