"""Build step: install ONNX Runtime Web with npm and copy what the browser needs into
mlapp/static/mlapp/ort/ (the admin's "run in this browser" and mlapp/static/mlapp/edge.js).

The files are built, not committed (15 MB of WebAssembly): ``make install`` and ``make wheel``
run this script, and the wheel ships them (``.ci/check_wheel.py`` fails without them), so the
wheel installs offline and the page fetches nothing from a CDN. npm installs the exact
version of web/package.json, checked against web/package-lock.json (``npm ci``).

    python web/build_ort.py            # npm ci when needed, then copy
    python web/build_ort.py --if-npm   # the same, but only a warning where npm is missing
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

WEB = Path(__file__).resolve().parent
TARGET = WEB.parent / "mlapp" / "static" / "mlapp" / "ort"
PACKAGE = WEB / "node_modules" / "onnxruntime-web"
#: The WebAssembly build only (no WebGL/WebGPU): the UMD script, the module it imports and
#: the binary it instantiates.
FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


def wanted_version() -> str:
    return json.loads((WEB / "package.json").read_text())["dependencies"]["onnxruntime-web"]


def installed_version() -> str | None:
    try:
        return json.loads((PACKAGE / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def main(argv: list[str]) -> int:
    version = wanted_version()
    if installed_version() != version:
        npm = shutil.which("npm")
        if npm is None:
            message = "npm is not installed: the in-browser runtime (onnxruntime-web) is not built."
            if "--if-npm" in argv:
                print(f"build_ort: warning: {message}", file=sys.stderr)
                return 0
            print(f"build_ort: {message} Install Node.js and npm.", file=sys.stderr)
            return 1
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=WEB,
            check=True,
        )
    if installed_version() != version:
        print(f"build_ort: onnxruntime-web {version} did not install.", file=sys.stderr)
        return 1
    TARGET.mkdir(parents=True, exist_ok=True)
    manifest = {"onnxruntime-web": version, "license": "MIT", "files": {}}
    for name in FILES:
        shutil.copyfile(PACKAGE / "dist" / name, TARGET / name)
        data = (TARGET / name).read_bytes()
        manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (TARGET / "VERSION.json").write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(f["size"] for f in manifest["files"].values())
    print(f"build_ort: onnxruntime-web {version} -> {TARGET} ({total / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
