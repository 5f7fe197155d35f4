"""Corpus schema version 2: training records carry their fact (key, form, shared) and eval-only flag.

Rows ingested from a version-1 corpus cannot be filled in (the fact fields did not exist): the
migration refuses to run while any training record exists; re-ingest the regenerated corpus.
"""

from django.db import migrations, models


def refuse_old_rows(apps, schema_editor) -> None:
    if apps.get_model("hierarchy", "TrainingRecord").objects.exists():
        raise RuntimeError("training records of a version-1 corpus exist: delete them and re-ingest a "
                           "version-2 corpus (oblivio synth) before migrating")


class Migration(migrations.Migration):

    dependencies = [
        ("hierarchy", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(refuse_old_rows, migrations.RunPython.noop),
        migrations.RemoveField(model_name="trainingrecord", name="paraphrase_of"),
        migrations.AddField(
            model_name="trainingrecord", name="fact_key",
            field=models.CharField(default="", help_text="Kind of fact asked (e.g. patient.name).", max_length=64),
            preserve_default=False),
        migrations.AddField(
            model_name="trainingrecord", name="form",
            field=models.CharField(default="", help_text="Task form and phrasing (e.g. cloze-1).", max_length=32),
            preserve_default=False),
        migrations.AddField(model_name="trainingrecord", name="shared", field=models.BooleanField(default=False)),
        migrations.AddField(
            model_name="trainingrecord", name="eval_only",
            field=models.BooleanField(default=False, help_text="Held-out form, never trained on.")),
    ]
