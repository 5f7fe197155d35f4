"""Webhook signing secrets are stored sealed (Fernet under ``$OBLIVIO_HOME/secrets/webhook_secret_key``)."""

from django.db import migrations, models


def seal(apps, schema_editor):
    from compliance.webhooks import seal_secret

    for endpoint in apps.get_model("compliance", "WebhookEndpoint").objects.all():
        endpoint.sealed_secret = seal_secret(endpoint.sealed_secret)
        endpoint.save(update_fields=["sealed_secret"])


def unseal(apps, schema_editor):
    from compliance.webhooks import webhook_secret

    for endpoint in apps.get_model("compliance", "WebhookEndpoint").objects.all():
        endpoint.sealed_secret = webhook_secret(endpoint)
        endpoint.save(update_fields=["sealed_secret"])


class Migration(migrations.Migration):
    dependencies = [("compliance", "0004_role_groups")]

    operations = [
        migrations.RenameField("webhookendpoint", "secret", "sealed_secret"),
        migrations.AlterField(
            "webhookendpoint", "sealed_secret",
            models.TextField(help_text="The HMAC-SHA256 key shared with the receiver, sealed with the "
                                       "deployment's webhook key (Fernet); read it with "
                                       "compliance.webhooks.webhook_secret().")),
        migrations.RunPython(seal, unseal),
    ]
