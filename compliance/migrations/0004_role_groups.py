"""One Django group per human role (see ``core.principals.Role``)."""

from django.db import migrations

ROLE_GROUPS = ("compliance_officer", "ml_engineer", "auditor")


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLE_GROUPS:
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("compliance", "0003_forget_requests_access_webhooks"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
