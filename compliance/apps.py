from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        from .pipeline import hooks  # noqa: F401  (registers the lifecycle hooks)
