"""cloud-run-v2.md, "Exact limits and validation rules": service IDs and revision names."""

from __future__ import annotations

import re

import pytest

from tests.emulator.emulator_testkit import IMAGE, IMAGE2, Api, short, template, violated_fields


@pytest.mark.parametrize("service_id", ["1abc", "abc-", "Abc", "a" * 50, "a_b", "-abc", ""])
def test_service_id_rules(cr: Api, service_id: str) -> None:
    """ "Service ID (v2) | starts with a letter; no trailing hyphen; **fewer than 50 chars**;
    lowercase letters, digits and `-` only"."""
    with cr.raises("INVALID_ARGUMENT") as err:
        cr.create(service_id)
    assert violated_fields(err.value) == {"service_id"}
    assert list(cr.services.list_services(parent="projects/example-project/locations/us-central1")) == []


def test_service_id_of_49_chars_is_accepted(cr: Api) -> None:
    """ "v2 is stricter: use ≤49" — and 49 itself is fine."""
    assert cr.create_ready("a" * 49).name.endswith("/" + "a" * 49)


def test_generated_revision_names(cr: Api) -> None:
    """ "Revision name | optional. Server format `{service}-{NNNNN}-{xyz}` (e.g. `...-00032-zun`)"."""
    svc = cr.create_ready("fraud-scorer")
    assert re.fullmatch(r"fraud-scorer-00001-[a-z0-9]{3}", short(svc.latest_created_revision))
    svc.template.containers[0].image = IMAGE2
    svc = cr.update_ready(svc)
    assert re.fullmatch(r"fraud-scorer-00002-[a-z0-9]{3}", short(svc.latest_created_revision))


@pytest.mark.parametrize(
    ("revision", "why"),
    [("green", "prefixed"), ("svc-Blue", "DNS-1035"), ("svc-" + "a" * 60, "at most 63"), ("svc-x-", "DNS-1035")],
)
def test_client_revision_name_rules(cr: Api, revision: str, why: str) -> None:
    """ "If you supply one: unique per service, DNS-1035 label ≤63 chars, prefixed `{service}-`"."""
    with cr.raises("INVALID_ARGUMENT") as err:
        cr.create("svc", template(revision=revision))
    assert violated_fields(err.value) == {"service.template.revision"}
    assert why in err.value.message


def test_revision_name_reused_with_different_template_conflicts(cr: Api) -> None:
    """ "**Sending back an existing name with a changed template gives 409 "Revision named … with
    different configuration already exists".**" — and nothing changes."""
    svc = cr.create_ready("svc", template(revision="svc-v1"))
    svc.template.containers[0].image = IMAGE2
    with cr.raises("ALREADY_EXISTS") as err:
        cr.update(svc)
    assert "Revision named 'svc-v1' with different configuration already exists." in err.value.message
    after = cr.get("svc")
    assert after.generation == 1 and after.template.containers[0].image == IMAGE
    assert cr.revision_ids("svc") == ["svc-v1"]


def test_revision_name_reused_with_same_template_makes_no_revision(cr: Api) -> None:
    """The name identifies one configuration: the same name with the same template is that
    revision again, not a new one (the issue's "the same template → no new revision")."""
    svc = cr.create_ready("svc", template(revision="svc-v1"))
    svc.template = template(IMAGE2, revision="svc-v2")
    v2 = cr.update_ready(svc)
    assert short(v2.latest_ready_revision) == "svc-v2"
    v2.template = template(IMAGE, revision="svc-v1")
    back = cr.update_ready(v2)
    assert short(back.latest_created_revision) == "svc-v1" == short(back.latest_ready_revision)
    assert back.generation == 3
    assert cr.revision_ids("svc") == ["svc-v1", "svc-v2"]
