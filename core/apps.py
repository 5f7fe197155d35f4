from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core (audit chain, keys)"

    def ready(self) -> None:
        from .keys import record_fingerprints

        post_migrate.connect(record_fingerprints, sender=self, dispatch_uid="core.record_fingerprints")
