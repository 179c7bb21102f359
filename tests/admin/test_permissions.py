"""Who may do what in the admin: upload needs ``add``, stage changes need ``change`` on model
versions; view-only staff can look and try; non-staff and anonymous users get nothing."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from django.urls import reverse

from mlapp.models import ModelVersion
from mlapp.versions.lifecycle import promote_version
from tests.admin.tiny_models import iris_file, new_iris_version, register_iris_and_digits

VIEW = ["view_mlmodel", "view_modelversion"]

#: user name -> (is_staff, permission codenames)
USERS = {
    "viewer": (True, VIEW),
    "uploader": (True, [*VIEW, "add_modelversion"]),
    "releaser": (True, [*VIEW, "change_modelversion"]),
    "outsider": (False, [*VIEW, "add_modelversion", "change_modelversion"]),
}


class AdminPermissionMatrixTest(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.iris, _ = register_iris_and_digits()
        cls.v1 = cls.iris.production_version
        cls.v2 = new_iris_version()
        cls.users = {}
        for name, (is_staff, codenames) in USERS.items():
            user = get_user_model().objects.create_user(name, password="pw", is_staff=is_staff)
            user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
            cls.users[name] = user

    def as_user(self, name: str | None) -> None:
        self.client.logout()
        if name is not None:
            self.client.force_login(self.users[name])

    def status(self, name: str | None, method: str, url: str, data: dict | None = None) -> int:
        self.as_user(name)
        return getattr(self.client, method)(url, data or {}).status_code

    def test_upload_page_needs_the_add_permission(self) -> None:
        url = reverse("admin:mlapp_modelversion_add")
        seen = {name: self.status(name, "get", url) for name in [*USERS, None]}
        self.assertEqual(
            seen, {"viewer": 403, "uploader": 200, "releaser": 403, "outsider": 302, None: 302}
        )

    def test_upload_post_without_the_add_permission_stores_nothing(self) -> None:
        before = ModelVersion.objects.count()
        artifact = SimpleUploadedFile("model.pt", iris_file().read_bytes())
        url = reverse("admin:mlapp_modelversion_add")
        data = {"model": self.iris.pk, "artifact_file": artifact}
        self.assertEqual(self.status("releaser", "post", url, data), 403)
        self.assertEqual(ModelVersion.objects.count(), before)

    def test_stage_pages_need_the_change_permission(self) -> None:
        promote_version(self.v2)  # so that roll back has somewhere to go
        for action, version in (("promote", self.v1), ("rollback", self.v2), ("archive", self.v1)):
            url = reverse(f"admin:mlapp_version_{action}", args=[version.pk])
            seen = {name: self.status(name, "get", url) for name in [*USERS, None]}
            self.assertEqual(
                seen,
                {"viewer": 403, "uploader": 403, "releaser": 200, "outsider": 302, None: 302},
                action,
            )

    def test_view_only_staff_cannot_promote_by_posting(self) -> None:
        url = reverse("admin:mlapp_version_promote", args=[self.v2.pk])
        self.assertEqual(self.status("viewer", "post", url, {"post": "yes"}), 403)
        self.as_user("viewer")
        self.client.post(
            "/admin/mlapp/modelversion/",
            {"action": "promote_selected", "_selected_action": [self.v2.pk], "post": "yes"},
        )
        self.v2.refresh_from_db()
        self.assertEqual(self.v2.stage, "staging")

    def test_releaser_can_promote(self) -> None:
        url = reverse("admin:mlapp_version_promote", args=[self.v2.pk])
        self.assertEqual(self.status("releaser", "post", url, {"post": "yes"}), 302)
        self.v2.refresh_from_db()
        self.assertEqual(self.v2.stage, "production")

    def test_view_only_staff_can_look_and_try(self) -> None:
        self.as_user("viewer")
        page = self.client.get(reverse("admin:mlapp_modelversion_change", args=[self.v2.pk]))
        self.assertEqual(page.status_code, 200)
        self.assertContains(page, "mlapp-try-link")
        self.assertNotContains(page, "mlapp-promote-link")
        self.assertNotContains(page, "mlapp-archive-link")
        self.assertNotIn("promote_selected", self.changelist_actions())
        answer = self.client.post(
            reverse("admin:mlapp_version_try", args=[self.v1.pk]),
            {"body": '{"inputs": [[6.7, 3.0, 5.2, 2.3]]}'},
        )
        self.assertEqual(answer.status_code, 200)
        self.assertIn('"virginica"', answer.context["result"])

    def test_releaser_sees_the_stage_buttons_and_actions(self) -> None:
        self.as_user("releaser")
        page = self.client.get(reverse("admin:mlapp_modelversion_change", args=[self.v2.pk]))
        self.assertContains(page, "mlapp-promote-link")
        self.assertContains(page, "mlapp-archive-link")
        self.assertIn("promote_selected", self.changelist_actions())

    def test_try_needs_at_least_the_view_permission(self) -> None:
        nobody = get_user_model().objects.create_user("nobody", password="pw", is_staff=True)
        self.client.force_login(nobody)
        url = reverse("admin:mlapp_version_try", args=[self.v1.pk])
        self.assertEqual(self.client.get(url).status_code, 403)

    def changelist_actions(self) -> list[str]:
        response = self.client.get("/admin/mlapp/modelversion/")
        form = response.context["action_form"]
        return [value for value, _ in form.fields["action"].choices] if form else []
