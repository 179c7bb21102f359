"""Scan a pickle's opcodes, never executing it, and refuse globals beyond tensors.

TorchScript archives, ``torch.save`` files and the pickled members of ``torch.export``
archives are unpickled by torch when loaded; :func:`check_pickle_globals` reads them first and
refuses any reference outside tensor rebuilding and TorchScript's own types.
"""

from __future__ import annotations

import io
import pickletools
import re
from typing import cast

from mlapp.exceptions import ArtifactError, UnsafeArtifact

# Globals a TorchScript archive's (or a torch.save'd tensor's) pickles legitimately name:
# tensor rebuilding, storage types, TorchScript's list/type tags; the scripted classes
# themselves live under ``__torch__``, which only TorchScript resolves. Anything else means
# a hand-made or foreign pickle. Names are checked too: ``torch save`` or ``torch os.system``
# are globals of module ``torch`` that must never pass.
_SAFE_PICKLE_GLOBALS = {
    "collections": frozenset({"OrderedDict"}),
    "torch._utils": frozenset(
        {
            "_rebuild_tensor",
            "_rebuild_tensor_v2",
            "_rebuild_tensor_v3",
            "_rebuild_parameter",
            "_rebuild_parameter_with_state",
            "_rebuild_qtensor",
            "_rebuild_sparse_tensor",
            "_rebuild_nested_tensor",
            "_rebuild_meta_tensor_no_storage",
            "_rebuild_device_tensor_from_numpy",
            "_rebuild_device_tensor_from_cpu_tensor",
        }
    ),
    "torch.jit._pickle": frozenset(
        {
            "build_intlist",
            "build_tensorlist",
            "build_doublelist",
            "build_boollist",
            "build_tensor_from_id",
            "restore_type_tag",
        }
    ),
    "torch": frozenset(
        {
            "Size",
            "device",
            "bool",
            "uint8",
            "int8",
            "int16",
            "int32",
            "int64",
            "float16",
            "bfloat16",
            "float32",
            "float64",
            "complex64",
            "complex128",
            "half",
            "float",
            "double",
            "long",
            "int",
            "short",
            "per_tensor_affine",
            "per_tensor_symmetric",
            "per_channel_affine",
            "per_channel_symmetric",
            "per_channel_affine_float_qparams",
        }
    ),
}
_TORCH_STORAGE = re.compile(r"[A-Za-z0-9]+Storage")
_STRING_OPCODES = frozenset(
    {
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "UNICODE",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
    }
)

PICKLE_HINT = (
    "mlapp never unpickles uploaded files. Export the model instead: "
    "torch.jit.script(model).save(path), torch.export.save(torch.export.export(...), path) "
    "or torch.onnx.export(...)."
)


def check_pickle_globals(data: bytes, member: str = "pickle") -> None:
    """Scan a pickle's opcodes (never executing it) and refuse foreign globals.

    Every pickle stream in ``data`` is scanned, not only the first: a loader may read
    several in a row (torch.load's legacy format does).
    """
    stream = io.BytesIO(data)
    try:
        while stream.tell() < len(data):
            _check_one_pickle(stream, member)
    except ValueError as exc:
        raise ArtifactError(f"{member} is not a valid pickle stream: {exc}") from None


def _check_one_pickle(stream: io.BytesIO, member: str) -> None:
    # ``pushed`` mirrors what the last opcodes pushed: a string when it is known (a string
    # opcode or a memo fetch of one), else None. STACK_GLOBAL takes its module and name
    # from the two most recent pushes and is refused unless both are known strings.
    pushed: list[str | None] = []
    memo: dict[int, str | None] = {}
    module: str | None
    attr: str | None
    for opcode, arg, _pos in pickletools.genops(stream):
        name = opcode.name
        if name in {"GLOBAL", "INST"}:
            module, _, attr = str(arg).partition(" ")
            _check_global(module, attr, member)
            pushed.append(None)
        elif name == "STACK_GLOBAL":
            module, attr = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
            if module is None or attr is None:
                raise UnsafeArtifact(f"{member}: unreadable global reference. {PICKLE_HINT}")
            _check_global(module, attr, member)
            pushed.append(None)
        elif name in {"EXT1", "EXT2", "EXT4"}:
            raise UnsafeArtifact(f"{member} uses the copyreg extension registry. {PICKLE_HINT}")
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in {"PUT", "BINPUT", "LONG_BINPUT"}:
            # The memo opcodes' argument is always an int (the stubs type every arg alike).
            memo[int(cast(int, arg))] = pushed[-1] if pushed else None
        elif name in {"GET", "BINGET", "LONG_BINGET"}:
            pushed.append(memo.get(int(cast(int, arg))))
        elif name in _STRING_OPCODES:
            pushed.append(str(arg))
        else:
            pushed.append(None)


def _check_global(module: str, attr: str, member: str) -> None:
    if module == "__torch__" or module.startswith("__torch__."):
        if attr.isidentifier():
            return
    elif attr in _SAFE_PICKLE_GLOBALS.get(module, ()) or (
        module == "torch" and _TORCH_STORAGE.fullmatch(attr)
    ):
        return
    raise UnsafeArtifact(
        f"{member} references {module + ' ' + attr!r}, which TorchScript archives and "
        "saved tensors never need; the archive was tampered with or is not TorchScript. "
        f"{PICKLE_HINT}"
    )
