from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        from . import audit_state  # noqa: F401  (registers the audit chain's state checks)
        from .pipeline import hooks  # noqa: F401  (registers the lifecycle hooks)
