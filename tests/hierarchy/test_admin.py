"""The hierarchy admin is view-only, shows short keyed hashes and searches by hashed identifiers."""

import pytest
from django.urls import reverse
from factories import hierarchy_make

pytestmark = pytest.mark.django_db

MODELS = ("institution", "patient", "study", "section", "corpus", "trainingrecord")


def test_changelists_render_without_raw_identifiers(admin_client) -> None:
    tree = hierarchy_make(institutions=1, patients=1, studies=1, holdout_patients=0)
    for model in MODELS:
        page = admin_client.get(reverse(f"admin:hierarchy_{model}_changelist"))
        assert page.status_code == 200, model
        text = page.content.decode()
        assert not any(raw in text for raw in (*tree.mrns.values(), *tree.uids.values()))
    patients = admin_client.get(reverse("admin:hierarchy_patient_changelist")).content.decode()
    assert tree.patients[0].mrn_hash[:12] in patients and tree.patients[0].mrn_hash not in patients


def test_lookup_posts_the_identifier_and_redirects_by_keyed_hash(admin_client) -> None:
    tree = hierarchy_make(institutions=1, patients=2, studies=1, holdout_patients=0)
    patient = tree.patients[1]
    term = f"{patient.institution.mrn_system}|{tree.mrns[patient.pk]}"
    lookup = admin_client.post(reverse("admin:hierarchy_patient_lookup"), {"identifier": term})
    assert lookup.status_code == 302 and tree.mrns[patient.pk] not in lookup["Location"]
    assert lookup["Location"].endswith(f"?mrn_hash={patient.mrn_hash}")
    found = admin_client.get(lookup["Location"]).content.decode()
    assert patient.mrn_hash[:12] in found and tree.patients[0].mrn_hash[:12] not in found
    study = tree.studies[0]
    lookup = admin_client.post(reverse("admin:hierarchy_study_lookup"),
                               {"identifier": f"urn:oid:{tree.uids[study.pk]}"})
    found = admin_client.get(lookup["Location"]).content.decode()
    assert study.uid_hash[:12] in found and tree.studies[1].uid_hash[:12] not in found


def test_identifiers_are_not_searched_through_the_query_string(admin_client) -> None:
    tree = hierarchy_make(institutions=1, patients=2, studies=1, holdout_patients=0)
    patient = tree.patients[1]
    assert admin_client.get(reverse("admin:hierarchy_patient_lookup"), {"identifier": "x"}).status_code == 405
    term = f"{patient.institution.mrn_system}|{tree.mrns[patient.pk]}"
    page = admin_client.get(reverse("admin:hierarchy_patient_changelist"), {"q": term}).content.decode()
    assert 'method="post"' in page and 'name="q"' not in page
    assert tree.patients[0].mrn_hash[:12] in page  # the term filtered nothing


def test_nothing_can_be_added_changed_or_deleted(admin_client) -> None:
    tree = hierarchy_make(institutions=1, patients=1, studies=1, holdout_patients=0)
    assert admin_client.get(reverse("admin:hierarchy_institution_add")).status_code == 403
    url = reverse("admin:hierarchy_patient_change", args=[tree.patients[0].pk])
    assert admin_client.post(url, {"institution": tree.institutions[0].pk}).status_code == 403
    delete = reverse("admin:hierarchy_study_delete", args=[tree.studies[0].pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
