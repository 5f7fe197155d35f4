"""The audit models now belong to ``core`` (core migration 0001); the tables stay as they are."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("compliance", "0005_webhook_secret_sealed"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name=name)
                              for name in ("AuditCheckpoint", "AuditEvent", "AuditHead")],
            database_operations=[],
        ),
    ]
