"""Fail unless the built wheel ships what a Django app needs beyond .py files."""

import sys
import zipfile

REQUIRED = [
    "mlapp/py.typed",
    "mlapp/migrations/0001_initial.py",
    "mlapp/migrations/0002_change_marker.py",
    "mlapp/apps.py",
    "mlapp/site_urls.py",
    "mlapp/templates/mlapp/api/filter_form.html",
    "mlapp/templates/admin/mlapp/stage_confirmation.html",
    "mlapp/templates/admin/mlapp/mlmodel/monitoring.html",
    "mlapp/templates/mlapp/api/redoc.html",
    "mlapp/static/mlapp/admin.css",
    "mlapp/api/grpc/open_inference_grpc.proto",
    "mlapp/api/grpc/open_inference_grpc.pb",
]


def main(path: str) -> int:
    names = set(zipfile.ZipFile(path).namelist())
    missing = [name for name in REQUIRED if name not in names]
    leaked = sorted(n for n in names if n.startswith(("tests/", "project/", "fixtures/")))
    if missing or leaked:
        print(f"{path}: missing {missing}, should not ship {leaked}")
        return 1
    print(f"{path}: {len(names)} files, ships {', '.join(REQUIRED)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
