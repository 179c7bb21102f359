"""``python -m mlapp.edge fetch URL MODEL [--version V]`` and ``run BUNDLE INPUT``.

``fetch`` downloads ``URL/models/MODEL/versions/V/bundle`` (``URL`` is where the host mounts
mlapp's native API, e.g. ``http://host/api/mlapp``; without ``--version``, the production
version), checks the download against the server's checksum header and the bundle against its
manifest, and only then saves it. ``run`` verifies a saved bundle again (its checksums, and its
signature with ``--key``) and runs it on INPUT: a JSON file (``-`` for standard input) holding
``{"inputs": ...}`` as the native predict API takes it. A refused bundle exits with status 2
and says why. Needs no Django: numpy and ONNX Runtime.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from mlapp.edge.bundle import BundleError, open_bundle
from mlapp.edge.run import Model

#: Seconds a request to the server may take.
TIMEOUT = 120


def _request(url: str, token: str | None) -> Any:
    if urllib.parse.urlsplit(url).scheme not in {"http", "https"}:
        raise BundleError(f"Only http(s) URLs can be fetched: {url}")
    request = urllib.request.Request(url)  # noqa: S310 - the scheme is checked above
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode("utf-8", "replace")
        raise BundleError(f"{url} answered {exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        raise BundleError(f"Cannot reach {url}: {exc.reason}") from None


def fetch(
    base: str, model: str, version: int | None, out: str | None, token: str | None, key: Any
) -> str:
    base = base.rstrip("/")
    quoted = urllib.parse.quote(model, safe="")
    if version is None:
        with _request(f"{base}/models/{quoted}/", token) as response:
            version = json.load(response).get("production_version")
        if version is None:
            raise BundleError(f"Model {model!r} has no production version; give --version.")
    target = out or f"{model}-v{version}.zip"
    folder = os.path.dirname(os.path.abspath(target))
    fd, partial = tempfile.mkstemp(prefix=".mlapp-bundle-", dir=folder)
    try:
        digest = hashlib.sha256()
        with _request(f"{base}/models/{quoted}/versions/{version}/bundle", token) as response:
            declared = response.headers.get("X-Checksum-SHA256")
            with os.fdopen(fd, "wb") as handle:
                for chunk in iter(lambda: response.read(1024 * 1024), b""):
                    digest.update(chunk)
                    handle.write(chunk)
        if declared and declared != digest.hexdigest():
            raise BundleError("The download does not match the server's X-Checksum-SHA256.")
        with tempfile.TemporaryDirectory() as scratch:
            bundle = open_bundle(partial, scratch, key=key)
        os.replace(partial, target)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    manifest = bundle.manifest
    print(
        f"Saved {target}: {manifest['model']} v{manifest['version']} ({manifest['format']}, "
        f"sha256 {manifest['sha256'][:12]}…), checksums verified"
        + (", signature verified" if bundle.signed else "")
        + "."
    )
    return target


def run(path: str, source: str, key: Any, threads: int | None) -> dict[str, Any]:
    try:
        if source == "-":
            body = json.load(sys.stdin)
        else:
            with open(source, encoding="utf-8") as handle:
                body = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BundleError(f"Cannot read the input {source}: {exc}") from None
    with tempfile.TemporaryDirectory() as scratch:
        bundle = open_bundle(path, scratch, key=key)
        model = Model(bundle, threads=threads)
        outputs = model.predict(body)
    manifest = bundle.manifest
    return {"model": manifest["model"], "version": manifest["version"], "outputs": outputs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlapp.edge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help="Download and verify a model's bundle.")
    get.add_argument("url", help="The native API's base URL, e.g. http://host/api/mlapp")
    get.add_argument("model")
    get.add_argument("--version", type=int, help="Default: the production version.")
    get.add_argument("--out", help="Where to save it (default MODEL-vV.zip).")
    get.add_argument("--token", default=os.environ.get("MLAPP_TOKEN"), help="API token.")
    use = commands.add_parser("run", help="Verify a bundle and run it on an input.")
    use.add_argument("bundle")
    use.add_argument("input", help='JSON file with {"inputs": ...}, or - for standard input.')
    use.add_argument("--threads", type=int)
    for sub in (get, use):
        sub.add_argument(
            "--key",
            default=os.environ.get("MLAPP_BUNDLE_KEY"),
            help="The signing key (MLAPP['BUNDLE_SIGNING_KEY'] on the server): the manifest's "
            "signature must verify with it. Default: $MLAPP_BUNDLE_KEY.",
        )
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            fetch(args.url, args.model, args.version, args.out, args.token, args.key)
        else:
            print(json.dumps(run(args.bundle, args.input, args.key, args.threads)))
    except BundleError as exc:
        print(f"mlapp.edge: refused: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
