"""The admin's monitoring page of a model: charts of the log, accuracy and drift."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

import mlapp
from mlapp.admin import charts
from mlapp.models import MLModel
from mlapp.monitoring import record_feedback
from mlapp.monitoring.drift import drift_report, set_reference

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    user.is_superuser = True
    user.save()
    client.force_login(user)
    return client


def test_the_page_draws_traffic_accuracy_drift_and_the_last_requests(staff, register_iris, log):
    from django.utils import timezone

    version = register_iris(rate=1.0)
    data = load_iris()
    train, test, _, species = train_test_split(
        data.data, data.target, test_size=0.3, random_state=0, stratify=data.target
    )
    set_reference(version, {"input": train.astype("float32")})
    started = timezone.now()
    shifted = test.copy()
    shifted[:, 2] += 1.0
    for number, row in enumerate(shifted):
        mlapp.predict("iris", [row.tolist()], key=f"flower-{number}")
    log.flush()
    record_feedback("iris", {f"flower-{n}": data.target_names[s] for n, s in enumerate(species)})
    report = drift_report(version, since=started)
    assert report is not None
    assert report.drifted

    model = MLModel.objects.get(name="iris")
    change = staff.get(f"/admin/mlapp/mlmodel/{model.pk}/change/").content.decode()
    url = f"/admin/mlapp/mlmodel/{model.pk}/monitoring/"
    assert url in change
    page = staff.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('<svg class="mlapp-chart') == 3
    assert "45 requests in the last" in html  # the volume chart's label
    assert ">v1</text>" in html  # the accuracy series of version 1
    assert ">input.2</text>" in html  # the most drifted feature is drawn
    assert "mlapp-threshold" in html
    assert "input.2: PSI" in html  # the latest report's alerts
    assert "flower-44" in html  # the last logged requests


def test_the_page_says_what_is_missing_on_a_model_with_nothing_logged(staff, register_iris):
    register_iris()
    model = MLModel.objects.get(name="iris")
    html = staff.get(f"/admin/mlapp/mlmodel/{model.pk}/monitoring/").content.decode()
    assert "The prediction log is off" in html
    assert "no feedback yet" in html
    assert "no drift report yet" in html
    assert "Nothing logged yet." in html


def test_the_page_needs_an_admin_login_and_a_model(client, staff, register_iris):
    register_iris()
    model = MLModel.objects.get(name="iris")
    client.logout()
    response = client.get(f"/admin/mlapp/mlmodel/{model.pk}/monitoring/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    staff.force_login(get_user_model().objects.get(username="ops"))
    assert staff.get("/admin/mlapp/mlmodel/999/monitoring/").status_code == 404


def test_line_chart_escapes_names_and_draws_a_line_per_series():
    svg = str(
        charts.line_chart(
            [("<b>", [(0, 1.0), (60, 2.0)]), ("ok", [(0, 0.5)])], label="x", threshold=1.5
        )
    )
    assert "&lt;b&gt;" in svg
    assert "<b>" not in svg
    assert svg.count("<polyline") == 1  # one point makes no line
    assert svg.count("<circle") == 3
    assert "mlapp-threshold" in svg
