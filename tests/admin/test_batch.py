"""Admin pages of batch jobs: progress, counts, errors, and a cancel action that confirms."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from mlapp.models import BatchJob, BatchPrediction
from mlapp.versions.lifecycle import register_version

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/mlapp/batchjob/"


@pytest.fixture
def version(onnx_file):
    return register_version("affine", onnx_file, promote=True)


@pytest.fixture
def jobs(version):
    running = BatchJob.objects.create(
        version=version, source_name="flowers", status="running", total=200, done=50, failed=3
    )
    finished = BatchJob.objects.create(version=version, status="succeeded", total=10, done=10)
    BatchPrediction.objects.create(
        job=running, model=version.model, version=version, key="k7", error="Input 'x' is bad."
    )
    return running, finished


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_changelist_shows_status_progress_bar_and_counts(admin_client, jobs):
    page = admin_client.get(CHANGELIST).content.decode()
    assert '<progress max="200" value="53"' in page
    assert "26%" in page
    assert "50 / <strong" in page
    assert "flowers (registered)" in page
    assert "running" in page
    assert "succeeded" in page


def test_job_page_lists_the_failed_items_with_their_errors(admin_client, jobs):
    running, _ = jobs
    page = admin_client.get(f"{CHANGELIST}{running.pk}/change/").content.decode()
    assert "k7" in page
    assert "Input &#x27;x&#x27; is bad." in page
    assert "… 2 more" in page


def test_cancel_action_asks_first_then_cancels_only_active_jobs(admin_client, jobs):
    running, finished = jobs
    data = {"action": "cancel_selected", ACTION_CHECKBOX_NAME: [running.pk, finished.pk]}
    confirm = admin_client.post(CHANGELIST, data)
    assert confirm.status_code == 200
    assert "Cancel batch jobs?" in confirm.content.decode()
    running.refresh_from_db()
    assert running.status == "running"
    done = admin_client.post(CHANGELIST, {**data, "post": "yes"}, follow=True)
    text = done.content.decode()
    assert "Cancelled 1 batch job" in text
    assert "1 job had already finished" in text
    running.refresh_from_db()
    finished.refresh_from_db()
    assert (running.status, finished.status) == ("cancelled", "succeeded")
    assert running.finished_at is not None


def test_cancel_of_finished_jobs_only_says_so_and_stays_on_the_list(admin_client, jobs):
    _, finished = jobs
    data = {"action": "cancel_selected", ACTION_CHECKBOX_NAME: [finished.pk]}
    response = admin_client.post(CHANGELIST, data, follow=True)
    assert response.redirect_chain == [(CHANGELIST, 302)]
    assert "1 job had already finished" in response.content.decode()
    finished.refresh_from_db()
    assert finished.status == "succeeded"


def test_jobs_cannot_be_added_or_edited_in_the_admin(admin_client, jobs):
    running, _ = jobs
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    page = admin_client.get(f"{CHANGELIST}{running.pk}/change/").content.decode()
    assert 'name="_save"' not in page


def test_staff_without_change_permission_sees_jobs_but_cannot_cancel(client, jobs):
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_batchjob"))
    client.force_login(user)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert "cancel_selected" not in page.content.decode()
