"""On a GPU: a version that cannot run on the server's device is refused when it is promoted.

The validation sandbox loads every upload on the CPU (CUDA cannot start under its
address-space limit), so an archive that runs there but not on the GPU passes validation;
the promotion, which loads the version on ``MLAPP["DEVICE"]`` and answers its handler's
example first, must refuse it with the reason (a 409 through the API) and leave production
answering. The device check, run on the device machine as bench/gpu_batching.py is
(docs/performance.md, "On a GPU"):

- version 1, the portable trace of bench/gpu_batching.py, is registered and promoted, and
  answers on the device;
- version 2, the same encoder traced the naive way (transformers writes the tracing device,
  the CPU, into it), is registered (validation on the CPU accepts it), then promoted: on a
  GPU this is refused, production stays version 1 and still answers.

On a CPU both versions run, so both promotions succeed; the script says which it saw and
exits 1 when the device's outcome is not the expected one.

    python bench/gpu_promotion.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gpu_batching import (  # noqa: E402
    RUNTIME_SIGNATURE,
    build_encoder,
    configure,
    parse_with_tokenizer,
)

HANDLER = "project.demo.handlers.MiniLMHandler"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1 or cpu")
    args = parse_with_tokenizer(parser)
    work = Path(tempfile.mkdtemp(prefix="mlapp-gpu-promotion-"))
    configure(work, args.device, 1, args.tokenizer_dir)

    from django.core.management import call_command

    import mlapp
    from mlapp.exceptions import StageError
    from mlapp.models import MLModel
    from mlapp.versions.lifecycle import promote_version, register_version

    call_command("migrate", verbosity=0)
    portable, pinned = work / "portable.pt", work / "pinned.pt"
    build_encoder(portable)
    build_encoder(pinned, portable=False)
    text = {"text": ["a version that cannot run on the device is refused"]}

    register_version("enc", portable, signature=RUNTIME_SIGNATURE, handler=HANDLER, promote=True)
    first = mlapp.predict("enc", text)
    print(f"version 1 (portable trace) answers on {args.device}: version {first.version}")
    second = register_version("enc", pinned, signature=RUNTIME_SIGNATURE, handler=HANDLER)
    print("version 2 (trace pinned to the CPU): validated in the sandbox, on the CPU")
    try:
        promote_version(second)
    except StageError as exc:
        refused = str(exc)
    else:
        refused = None
    production = MLModel.objects.get(name="enc").production_version.version
    after = mlapp.predict("enc", text)
    print(f"promotion of version 2: {'refused: ' + refused if refused else 'accepted'}")
    print(f"production: version {production}; a request is answered by version {after.version}")
    on_gpu = args.device.startswith("cuda")
    expected = (
        refused is not None and production == 1 and after.version == 1
        if on_gpu
        else refused is None and production == 2 and after.version == 2
    )
    print("as expected" if expected else "NOT as expected")
    raise SystemExit(0 if expected else 1)


if __name__ == "__main__":
    main()
