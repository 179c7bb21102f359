"""A corpus of hostile artifacts, built by a script: every one must be refused, none may run.

``build(folder, marker)`` writes the files and returns what each one tries. Payloads that would
execute code run ``touch <marker>``: a test that finds the marker afterwards found code run.
The classes (``kind``) are what the README's reliability table counts:

- ``pickle``: a pickle that calls ``os.system``, under every extension a user might upload;
- ``torchscript``: a real TorchScript archive tampered with (payload pickles, file reads);
- ``export``: a real ``torch.export`` archive whose program carries Python (guards code,
  symbolic sizes evaluated by sympy, a node calling ``os.system``);
- ``zip``: zip bombs, traversal and absolute names, duplicates, encryption, unknown
  compression, non-UTF-8 names, truncation;
- ``onnx``: a model that reads external data beside it, one that never returns, one that
  allocates without bound (``sandbox``: refused by the validation sandbox, not statically).

Run it as a script to write the corpus into a folder: ``python -m tests.hostile.corpus DIR``.
"""

from __future__ import annotations

import io
import json
import os
import pickle  # noqa: TID251 - writes the hostile files mlapp must refuse; never loads one
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from tests import artifacts


@dataclass(frozen=True)
class Hostile:
    name: str
    path: Path
    kind: str
    #: True when only the sandbox (the load and the run) can tell: no static check can.
    sandbox: bool = False


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):  # what pickle.dumps calls
        return (os.system, (self.command,))


def payload_pickle(marker: Path) -> bytes:
    return pickle.dumps(_System(f"touch {marker}"), protocol=2)


def _rewrite(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    """Copy a zip archive, replacing members whose name ends with a key of ``replace``."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            zout.writestr(info, data)
    return target


def _program(pt2: Path) -> tuple[str, dict]:
    with zipfile.ZipFile(pt2) as zf:
        name = next(n for n in zf.namelist() if n.endswith("models/model.json"))
        return name, json.loads(zf.read(name))


def _export_variants(folder: Path, marker: Path) -> list[Hostile]:
    clean = artifacts.torch_export(folder / "clean-export.pt2")
    _, program = _program(clean)
    command = f"__import__('os').system('touch {marker}')"
    variants = []

    guarded = json.loads(json.dumps(program))
    guarded["guards_code"] = [command]
    variants.append(("export-guards-code", guarded))

    text = json.dumps(program)
    symbol = "Symbol('s77', positive=True, integer=True)"
    assert symbol in text, "the export's symbolic size changed name: update the corpus"
    sized = json.loads(text.replace(symbol, f"{command} or {symbol}"))
    variants.append(("export-expr-str", sized))

    targeted = json.loads(json.dumps(program))
    targeted["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"
    variants.append(("export-node-target", targeted))

    reading = json.loads(json.dumps(program))
    reading["graph_module"]["graph"]["nodes"][0]["target"] = "torch.ops.aten.from_file.default"
    variants.append(("export-aten-from-file", reading))

    ranged = json.loads(json.dumps(program))
    ranged["range_constraints"][command] = {"min_val": 1, "max_val": 4}
    variants.append(("export-range-key", ranged))

    out = []
    for name, tampered in variants:
        path = _rewrite(
            clean, folder / f"{name}.pt2", {"models/model.json": json.dumps(tampered).encode()}
        )
        out.append(Hostile(name, path, "export"))
    sample = _rewrite(
        clean,
        folder / "export-sample-inputs.pt2",
        {"sample_inputs/model.pt": payload_pickle(marker)},
    )
    out.append(Hostile("export-sample-inputs", sample, "export"))
    clean.unlink()
    return out


def _torchscript_variants(folder: Path, marker: Path) -> list[Hostile]:
    clean = artifacts.torchscript(folder / "clean.pt")
    out = [
        Hostile(
            "torchscript-data-pkl",
            _rewrite(
                clean, folder / "torchscript-data-pkl.pt", {"/data.pkl": payload_pickle(marker)}
            ),
            "torchscript",
        ),
        Hostile(
            "torchscript-constants-pkl",
            _rewrite(
                clean,
                folder / "torchscript-constants.pt",
                {"/constants.pkl": payload_pickle(marker)},
            ),
            "torchscript",
        ),
    ]
    with zipfile.ZipFile(clean) as zf:
        code = next(
            n
            for n in zf.namelist()
            if n.endswith("code/__torch__/tests/artifacts.py") or n.endswith(".py")
        )
        source = zf.read(code).decode()
    reads = source.replace(
        "return", 'secret = torch.from_file("/etc/passwd", False, 8, dtype=0)\n    return', 1
    )
    out.append(
        Hostile(
            "torchscript-from-file",
            _rewrite(
                clean, folder / "torchscript-from-file.pt", {code.split("/", 1)[1]: reads.encode()}
            ),
            "torchscript",
        )
    )
    clean.unlink()
    return out


def _zip(path: Path, members: list[tuple[str, bytes]], *, method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _torchscript_members(root: str = "m") -> list[tuple[str, bytes]]:
    return [(f"{root}/data.pkl", b"\x80\x02N."), (f"{root}/code/__torch__.py", b"")]


def _zip_variants(folder: Path) -> list[Hostile]:
    out = []
    bomb = folder / "zip-bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in _torchscript_members():
            zf.writestr(name, data)
        with zf.open("m/data/0", "w") as member:
            block = bytes(1024 * 1024)
            for _ in range(64):
                member.write(block)
    out.append(Hostile("zip-bomb-ratio", bomb, "zip"))
    # Many small members, each under the ratio floor, adding up far beyond the archive.
    wide = folder / "zip-bomb-wide.pt"
    with zipfile.ZipFile(wide, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in _torchscript_members():
            zf.writestr(name, data)
        block = bytes(1024 * 1024 - 1)
        for i in range(120):
            zf.writestr(f"m/data/{i}", block)
    out.append(Hostile("zip-bomb-total", wide, "zip"))
    out.append(
        Hostile(
            "zip-traversal",
            _zip(folder / "zip-traversal.pt", [*_torchscript_members(), ("m/../../evil.py", b"x")]),
            "zip",
        )
    )
    out.append(
        Hostile(
            "zip-absolute",
            _zip(folder / "zip-absolute.pt", [*_torchscript_members(), ("/etc/cron.d/x", b"x")]),
            "zip",
        )
    )
    duplicate = folder / "zip-duplicate.pt"
    with zipfile.ZipFile(duplicate, "w") as zf:
        for name, data in _torchscript_members():
            zf.writestr(name, data)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zf.writestr("m/data.pkl", b"\x80\x02N.")
    out.append(Hostile("zip-duplicate-name", duplicate, "zip"))
    out.append(
        Hostile(
            "zip-unknown-method",
            _zip(folder / "zip-bzip2.pt", _torchscript_members(), method=zipfile.ZIP_BZIP2),
            "zip",
        )
    )
    encrypted = _zip(folder / "zip-encrypted.pt", _torchscript_members())
    data = bytearray(encrypted.read_bytes())
    # Set the "encrypted" flag bit in every local and central header.
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            flags = struct.unpack_from("<H", data, at + flag_offset)[0]
            struct.pack_into("<H", data, at + flag_offset, flags | 0x1)
            start = at + 4
    encrypted.write_bytes(bytes(data))
    out.append(Hostile("zip-encrypted-flag", encrypted, "zip"))
    utf8 = _zip(folder / "zip-bad-utf8.pt", [*_torchscript_members(), ("m/xx", b"x")])
    data = bytearray(utf8.read_bytes())
    for signature, flag_offset, name_offset in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            if data[at + name_offset : at + name_offset + 4] == b"m/xx":
                flags = struct.unpack_from("<H", data, at + flag_offset)[0]
                struct.pack_into("<H", data, at + flag_offset, flags | 0x800)
                data[at + name_offset + 2 : at + name_offset + 4] = b"\xff\xfe"
            start = at + 4
    utf8.write_bytes(bytes(data))
    out.append(Hostile("zip-non-utf8-name", utf8, "zip"))
    whole = _zip(folder / "zip-truncated.pt", _torchscript_members()).read_bytes()
    truncated = folder / "zip-truncated.pt"
    truncated.write_bytes(whole[: len(whole) // 2] + whole[-22:])
    out.append(Hostile("zip-truncated", truncated, "zip"))
    return out


def _pickle_variants(folder: Path, marker: Path) -> list[Hostile]:
    payload = payload_pickle(marker)
    out = [
        Hostile(f"pickle{ext}", _write(folder / f"pickle{ext}", payload), "pickle")
        for ext in (".pkl", ".pt", ".pth", ".onnx", ".pt2", ".bin", ".joblib")
    ]
    out.append(
        Hostile(
            "pickle-zlib.joblib",
            _write(folder / "pickle-zlib.joblib", zlib.compress(payload)),
            "pickle",
        )
    )
    saved = folder / "torch-save.pt"
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(2)}, buffer)
    saved.write_bytes(buffer.getvalue())
    _rewrite(saved, folder / "torch-save-payload.pt", {"/data.pkl": payload})
    saved.unlink()
    out.append(Hostile("torch-save-payload", folder / "torch-save-payload.pt", "pickle"))
    return out


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _onnx_variants(folder: Path) -> list[Hostile]:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])

    def model(nodes, initializers=(), *, name: str) -> onnx.ModelProto:
        graph = helper.make_graph(nodes, name, [x], [y], initializer=list(initializers))
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    out = []
    # External data: the weights live in a file beside the model, which validation runs
    # somewhere else (the scratch folder holds the artifact alone).
    external_dir = folder / "external"
    external_dir.mkdir(exist_ok=True)
    weights = numpy_helper.from_array(np.ones(3, dtype=np.float32), "w")
    beside = model([helper.make_node("Add", ["x", "w"], ["y"])], [weights], name="external")
    onnx.save_model(
        beside,
        str(external_dir / "onnx-external-data.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="neighbour.bin",
        size_threshold=0,
    )
    out.append(
        Hostile(
            "onnx-external-data", external_dir / "onnx-external-data.onnx", "onnx", sandbox=True
        )
    )

    # A loop whose trip count is 2**62: never returns.
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["v_in"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, ["batch", 3]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["batch", 3]),
        ],
    )
    spin = model(
        [
            helper.make_node(
                "Constant",
                [],
                ["trips"],
                value=numpy_helper.from_array(np.array(2**62, dtype=np.int64)),
            ),
            helper.make_node("Constant", [], ["go"], value=numpy_helper.from_array(np.array(True))),
            helper.make_node("Loop", ["trips", "go", "x"], ["y"], body=body),
        ],
        name="spin",
    )
    out.append(
        Hostile(
            "onnx-endless-loop",
            _write(folder / "onnx-endless-loop.onnx", spin.SerializeToString()),
            "onnx",
            sandbox=True,
        )
    )

    # 3 GiB of floats allocated at run time from the input's batch size.
    hog = model(
        [
            helper.make_node("Shape", ["x"], ["xs"], start=0, end=1),
            helper.make_node(
                "Constant",
                [],
                ["big"],
                value=numpy_helper.from_array(np.array([3 * 2**28], dtype=np.int64)),
            ),
            helper.make_node("Mul", ["xs", "big"], ["n"]),
            helper.make_node(
                "ConstantOfShape",
                ["n"],
                ["zeros"],
                value=numpy_helper.from_array(np.array([1.0], dtype=np.float32)),
            ),
            helper.make_node("ReduceSum", ["zeros"], ["total"], keepdims=0),
            helper.make_node("Add", ["x", "total"], ["y"]),
        ],
        name="hog",
    )
    out.append(
        Hostile(
            "onnx-memory-bomb",
            _write(folder / "onnx-memory-bomb.onnx", hog.SerializeToString()),
            "onnx",
            sandbox=True,
        )
    )
    return out


def build(folder: Path, marker: Path) -> list[Hostile]:
    """Write the hostile corpus into ``folder``; payloads would create ``marker``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        *_pickle_variants(folder, marker),
        *_torchscript_variants(folder, marker),
        *_export_variants(folder, marker),
        *_zip_variants(folder),
        *_onnx_variants(folder),
    ]


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    for item in build(target, target / "MARKER"):
        print(f"{item.kind:12} {item.name:28} {item.path}")
