"""The audit models move from ``compliance`` to ``core`` without touching the database.

The tables keep their names (``compliance_audit*``, see ``Meta.db_table``) and their append-only
triggers (compliance migration 0002); only Django's model state changes owner. On a fresh database
the compliance migrations still create the tables first, hence the dependency.
"""

from django.db import migrations, models

GENESIS = "0" * 64


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("compliance", "0005_webhook_secret_sealed"),
    ]

    state_operations = [
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("seq", models.PositiveBigIntegerField()),
                ("hash", models.CharField(max_length=64)),
                ("signed_at", models.DateTimeField()),
                ("key_id", models.CharField(max_length=64)),
                ("signature", models.CharField(help_text="base64 Ed25519 signature", max_length=128)),
            ],
            options={"db_table": "compliance_auditcheckpoint", "ordering": ["seq"]},
        ),
        migrations.CreateModel(
            name="AuditHead",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("seq", models.PositiveBigIntegerField(default=0)),
                ("hash", models.CharField(default=GENESIS, max_length=64)),
            ],
            options={"db_table": "compliance_audithead"},
        ),
        migrations.CreateModel(
            name="AuditEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("seq", models.PositiveBigIntegerField(unique=True)),
                ("occurred_at", models.DateTimeField()),
                ("actor", models.CharField(help_text="user name, 'api-key:<prefix>' or 'system'", max_length=150)),
                ("action", models.CharField(max_length=64)),
                ("object_type", models.CharField(blank=True, max_length=64)),
                ("object_id", models.CharField(blank=True, max_length=64)),
                ("subject_hash", models.CharField(blank=True, help_text="Keyed hash of the data subject's identifier.", max_length=64)),
                ("data", models.JSONField(blank=True, default=dict)),
                ("prev_hash", models.CharField(max_length=64)),
                ("hash", models.CharField(max_length=64, unique=True)),
            ],
            options={
                "db_table": "compliance_auditevent",
                "ordering": ["seq"],
                "indexes": [models.Index(fields=["object_type", "object_id"], name="compliance__object__53cfe7_idx"),
                            models.Index(fields=["action"], name="compliance__action_f0a43e_idx"),
                            models.Index(fields=["occurred_at"], name="compliance__occurre_ae6f62_idx")],
            },
        ),
    ]

    operations = [migrations.SeparateDatabaseAndState(state_operations=state_operations, database_operations=[])]
