"""The README's "Adding mlapp to your project" claims only what the integration test runs."""

from __future__ import annotations

import re
import tomllib

import django

from tests.integration.readme import DEPLOY, README, integration, section


def test_the_section_names_every_extra_of_the_package():
    extras = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    text = section()
    assert "`serve`" in text
    assert [extra for extra in extras if f"`{extra}`" not in text] == []


def test_the_django_version_claimed_is_the_one_ci_runs():
    prose = re.sub(r"```.*?```", "", section(), flags=re.DOTALL)
    claims = [sentence for sentence in re.split(r"\.\s", prose) if "Django " in sentence]
    versions = {
        version
        for sentence in claims
        for version in re.findall(r"(?<!Python )(?<![\w.])(\d+\.(?:\d+|x))(?![\w.])", sentence)
    }
    assert versions == {f"{django.VERSION[0]}.{django.VERSION[1]}"}, claims


def test_the_register_model_example_names_the_users_own_file():
    text = section()
    (register,) = [c for c in integration().commands if c[0] == "register_model"]
    assert not any(arg.startswith(("fixtures/", "project.")) for arg in register)
    assert "project.demo" not in text
    assert "fixtures/" not in text


def test_the_blocks_are_found_for_each_file_the_host_edits():
    found = integration()
    assert set(found.files) == {"settings.py", "urls.py", "wsgi.py"}
    assert [c[0] for c in found.commands][:1] == ["migrate"]
    assert found.commands[-1][0] == "mlapp_serve"
    assert any("git+" in line for line in found.installs)
    assert any(".whl" in line for line in found.installs)


def test_the_deployment_section_gives_a_settings_block_and_the_two_processes():
    found = integration(title=DEPLOY)
    assert set(found.files) == {"settings.py"}
    assert "CELERY_BROKER_URL" in found.files["settings.py"][0]
    names = [c[0] for c in found.commands]
    assert names[-2:] == ["mlapp_worker", "mlapp_serve"], names
    assert {"migrate", "collectstatic"} <= set(names), names
