"""Format detection by content, and refusal of everything that would unpickle code."""

from __future__ import annotations

import gzip
import io
import json
import pickle  # noqa: TID251 - builds the hostile files mlapp must refuse; never loads one
import random
import shutil
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from mlapp.exceptions import ArtifactError, UnsafeArtifact
from mlapp.runtimes.detect import detect_format
from mlapp.runtimes.pickles import check_pickle_globals
from mlapp.runtimes.torch_export import TorchExportRuntime
from mlapp.versions.validation import validate_artifact
from tests import artifacts

# --- hostile payloads


def _plant(marker: str) -> None:
    """What a hostile pickle runs when loaded: leaves a marker file behind."""
    Path(marker).write_text("pwned")


class _Payload:
    """Unpickling this calls _plant(marker): arbitrary code, as in a real attack."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_plant, (self.marker,))


def hostile_bytes(marker: Path) -> bytes:
    """A torch.save zip whose data.pkl runs code."""
    buffer = io.BytesIO()
    torch.save(_Payload(marker), buffer)
    return buffer.getvalue()


# A protocol-2 pickle calling os.system("true"), written by hand.
OS_SYSTEM_PICKLE = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."


def rewrite_zip(
    src: Path,
    dst: Path,
    replace: dict[str, bytes] | None = None,
    add: dict[str, bytes] | None = None,
) -> Path:
    """Copy a zip, replacing members by name suffix and adding members under its root."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            data = zin.read(info)
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            zout.writestr(info, data)
        for name, data in (add or {}).items():
            zout.writestr(f"{root}/{name}", data)
    return dst


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def torch_saved_payload(tmp_path: Path, marker: Path) -> Path:
    path = tmp_path / "payload.pt"
    path.write_bytes(hostile_bytes(marker))
    return path


def test_hostile_payload_runs_code_when_unpickled(torch_saved_payload, marker):
    # Proves the payload below is live, so the refusals are meaningful.
    torch.load(torch_saved_payload, weights_only=False)
    assert marker.read_text() == "pwned"


# --- the three formats


@pytest.mark.parametrize(
    ("fixture", "fmt"),
    [
        ("torchscript_file", "torchscript"),
        ("torch_export_file", "torch_export"),
        ("onnx_file", "onnx"),
    ],
)
def test_detect_recognises_each_format(request, fixture, fmt):
    assert detect_format(request.getfixturevalue(fixture)) == fmt


def test_detect_accepts_a_str_path(onnx_file):
    assert detect_format(str(onnx_file)) == "onnx"


@pytest.mark.parametrize(
    ("fixture", "name", "fmt"),
    [
        ("onnx_file", "model.pt", "onnx"),
        ("torchscript_file", "model.onnx", "torchscript"),
        ("torch_export_file", "model.onnx", "torch_export"),
        ("torchscript_file", "model.pt2", "torchscript"),
        ("onnx_file", "model", "onnx"),
    ],
)
def test_detect_ignores_the_file_extension(request, tmp_path, fixture, name, fmt):
    path = tmp_path / name
    shutil.copy(request.getfixturevalue(fixture), path)
    assert detect_format(path) == fmt


def test_detect_accepts_a_traced_torchscript_module(tmp_path):
    path = tmp_path / "traced.pt"
    torch.jit.trace(artifacts.Affine().eval(), torch.zeros(1, 3)).save(str(path))
    assert detect_format(path) == "torchscript"


class _WithListAttributes(torch.nn.Module):
    # TorchScript infers List[int], List[float], List[bool] and List[Tensor] from the values.
    def __init__(self) -> None:
        super().__init__()
        self.sizes = [1, 2]
        self.scales = [0.5]
        self.flags = [True]
        self.parts = [torch.zeros(1, dtype=torch.int64)]
        self.register_buffer("offset", torch.ones(3, dtype=torch.float16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.offset.float() + self.scales[0]


def test_detect_accepts_a_scripted_module_with_list_attributes(tmp_path):
    path = tmp_path / "lists.pt"
    torch.jit.script(_WithListAttributes()).save(str(path))
    assert detect_format(path) == "torchscript"


class _WithConstants(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("steps", torch.arange(3))
        self.scale = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.steps + torch.tensor([2.0])


def test_detect_accepts_an_exported_program_with_buffers_and_constants(tmp_path):
    path = tmp_path / "constants.pt2"
    torch.export.save(torch.export.export(_WithConstants(), (torch.zeros(3),)), str(path))
    assert detect_format(path) == "torch_export"


# --- pickles


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_detect_refuses_a_plain_pickle(tmp_path, protocol):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=protocol))
    with pytest.raises(UnsafeArtifact, match="Python pickle"):
        detect_format(path)


def test_detect_refuses_a_protocol_0_pickle(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0]}, protocol=0))
    with pytest.raises(ArtifactError, match="Unknown artifact format"):
        detect_format(path)


@pytest.mark.parametrize("name", ["model.pt", "model.onnx", "model.pt2", "model.pth"])
def test_detect_refuses_a_hostile_torch_save_payload_without_running_it(tmp_path, marker, name):
    path = tmp_path / name
    path.write_bytes(hostile_bytes(marker))
    with pytest.raises(UnsafeArtifact, match=r"torch\.save"):
        detect_format(path)
    assert not marker.exists()


def test_validate_artifact_refuses_a_hostile_torch_save_payload_without_running_it(
    torch_saved_payload, marker
):
    with pytest.raises(UnsafeArtifact):
        validate_artifact(str(torch_saved_payload))
    assert not marker.exists()


def test_detect_refuses_torch_save_of_a_state_dict(tmp_path):
    path = tmp_path / "state.pt"
    torch.save(artifacts.Affine().state_dict(), path)
    with pytest.raises(UnsafeArtifact, match=r"torch\.save"):
        detect_format(path)


def test_detect_refuses_torch_save_of_module(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(artifacts.Affine(), path)
    with pytest.raises(UnsafeArtifact, match=r"torch\.save"):
        detect_format(path)


@pytest.mark.parametrize("compress", [gzip.compress, zlib.compress], ids=["gzip", "zlib"])
def test_detect_refuses_a_compressed_pickle(tmp_path, compress):
    path = tmp_path / "model.joblib"
    path.write_bytes(compress(pickle.dumps({"weights": [1.0]}, protocol=4)))
    with pytest.raises(UnsafeArtifact, match="compressed Python pickle"):
        detect_format(path)


def test_detect_refuses_compressed_non_pickle_as_compressed_not_unsafe(tmp_path):
    path = tmp_path / "model.onnx.gz"
    path.write_bytes(gzip.compress(b"some bytes that are not a pickle"))
    with pytest.raises(ArtifactError, match="uncompressed") as info:
        detect_format(path)
    assert not isinstance(info.value, UnsafeArtifact)


def test_detect_does_not_call_text_starting_with_x_compressed(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"xylophone notes, not a model")
    with pytest.raises(ArtifactError, match="Unknown artifact format"):
        detect_format(path)


# --- tampered TorchScript archives


def test_detect_refuses_torchscript_whose_data_pkl_calls_os_system(tmp_path, torchscript_file):
    path = rewrite_zip(torchscript_file, tmp_path / "tampered.pt", {"/data.pkl": OS_SYSTEM_PICKLE})
    with pytest.raises(UnsafeArtifact, match="'os system'"):
        detect_format(path)


def test_validate_artifact_refuses_tampered_torchscript_without_running_it(
    tmp_path, torchscript_file, marker
):
    data = pickle.dumps(_Payload(marker), protocol=2)
    path = rewrite_zip(torchscript_file, tmp_path / "tampered.pt", {"/data.pkl": data})
    with pytest.raises(UnsafeArtifact, match="_plant"):
        validate_artifact(str(path), declared=artifacts.TWO_IN_SIGNATURE)
    assert not marker.exists()


def test_detect_refuses_torchscript_whose_constants_pkl_is_tampered(tmp_path, torchscript_file):
    path = rewrite_zip(
        torchscript_file, tmp_path / "tampered.pt", {"/constants.pkl": OS_SYSTEM_PICKLE}
    )
    with pytest.raises(UnsafeArtifact, match=r"constants\.pkl"):
        detect_format(path)


def test_detect_refuses_a_torch_save_payload_disguised_with_a_code_folder(
    tmp_path, torch_saved_payload, marker
):
    path = rewrite_zip(torch_saved_payload, tmp_path / "disguised.pt", add={"code/m.py": b""})
    with pytest.raises(UnsafeArtifact):
        detect_format(path)
    assert not marker.exists()


# --- tampered torch.export archives (torch.export.load unpickles several members)


def test_detect_refuses_torch_export_with_hostile_sample_inputs(
    tmp_path, torch_export_file, marker
):
    path = rewrite_zip(
        torch_export_file,
        tmp_path / "tampered.pt2",
        {"data/sample_inputs/model.pt": hostile_bytes(marker)},
    )
    with pytest.raises(UnsafeArtifact, match="sample_inputs"):
        detect_format(path)
    assert not marker.exists()


def test_validate_artifact_refuses_torch_export_with_hostile_sample_inputs(
    tmp_path, torch_export_file, marker
):
    path = rewrite_zip(
        torch_export_file,
        tmp_path / "tampered.pt2",
        {"data/sample_inputs/model.pt": hostile_bytes(marker)},
    )
    with pytest.raises(UnsafeArtifact):
        validate_artifact(str(path))
    assert not marker.exists()


def test_hostile_sample_inputs_do_run_when_torch_export_loads_them(
    tmp_path, torch_export_file, marker
):
    # Why the archive must be scanned before loading: torch.export.load falls back to
    # weights_only=False for sample inputs.
    path = rewrite_zip(
        torch_export_file,
        tmp_path / "tampered.pt2",
        {"data/sample_inputs/model.pt": hostile_bytes(marker)},
    )
    with pytest.raises(ArtifactError):
        TorchExportRuntime().load(str(path))
    assert marker.exists()


def _weights_config(src: Path, **changes: object) -> bytes:
    with zipfile.ZipFile(src) as zf:
        name = next(n for n in zf.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(zf.read(name))
    config["config"]["linear.weight"].update(changes)
    return json.dumps(config).encode()


def test_detect_refuses_torch_export_with_a_hostile_pickled_weight(
    tmp_path, torch_export_file, marker
):
    path = rewrite_zip(
        torch_export_file,
        tmp_path / "tampered.pt2",
        {
            "model_weights_config.json": _weights_config(torch_export_file, use_pickle=True),
            "data/weights/weight_0": hostile_bytes(marker),
        },
    )
    with pytest.raises(UnsafeArtifact, match="weight_0"):
        detect_format(path)
    assert not marker.exists()


def test_detect_scans_a_weight_the_config_declares_both_raw_and_pickled(
    tmp_path, torch_export_file, marker
):
    with zipfile.ZipFile(torch_export_file) as zf:
        name = next(n for n in zf.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(zf.read(name))
    entries = config["config"]
    entries["decoy"] = {**entries["linear.weight"], "use_pickle": True}
    assert entries["linear.weight"]["use_pickle"] is False
    path = rewrite_zip(
        torch_export_file,
        tmp_path / "tampered.pt2",
        {
            "model_weights_config.json": json.dumps(config).encode(),
            "data/weights/weight_0": hostile_bytes(marker),
        },
    )
    with pytest.raises(UnsafeArtifact, match="weight_0"):
        detect_format(path)
    assert not marker.exists()


def test_detect_refuses_torch_export_with_aotinductor_code(tmp_path, torch_export_file):
    path = rewrite_zip(
        torch_export_file,
        tmp_path / "aoti.pt2",
        add={"data/aotinductor/model/model.so": b"\x7fELF"},
    )
    with pytest.raises(UnsafeArtifact, match="AOTInductor"):
        detect_format(path)


def test_detect_refuses_a_legacy_export_zip_with_a_hostile_state_dict(tmp_path, marker):
    path = tmp_path / "legacy.pt2"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive_format", "pt2")
        zf.writestr("version", "8.0")
        zf.writestr("serialized_exported_program.json", "{}")
        zf.writestr("serialized_state_dict.pt", hostile_bytes(marker))
    with pytest.raises(UnsafeArtifact, match=r"serialized_state_dict\.pt"):
        detect_format(path)


def test_detect_refuses_torch_export_with_an_unknown_binary_member(tmp_path, torch_export_file):
    path = rewrite_zip(torch_export_file, tmp_path / "odd.pt2", add={"data/blob.bin": b"\x01\x02"})
    with pytest.raises(ArtifactError, match=r"blob\.bin"):
        detect_format(path)


# --- not a model at all


def test_detect_refuses_an_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.touch()
    with pytest.raises(ArtifactError, match="empty"):
        detect_format(path)


def test_detect_refuses_random_bytes(tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(b"\x01\x02" + random.Random(1234).randbytes(4096))
    with pytest.raises(ArtifactError, match="Unknown artifact format") as exc:
        detect_format(path)
    assert not isinstance(exc.value, UnsafeArtifact)


def test_detect_refuses_a_text_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("hello, this is not a model\n")
    with pytest.raises(ArtifactError, match="Unknown artifact format"):
        detect_format(path)


def test_detect_refuses_a_zip_with_unrelated_members(tmp_path):
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
        zf.writestr("weights/data.bin", b"\x00" * 16)
    with pytest.raises(ArtifactError, match=r"neither a TorchScript archive nor a torch\.export"):
        detect_format(path)


def test_detect_refuses_a_truncated_onnx_model(tmp_path, onnx_file):
    path = tmp_path / "truncated.onnx"
    path.write_bytes(onnx_file.read_bytes()[:40])
    with pytest.raises(ArtifactError, match="Unknown artifact format"):
        detect_format(path)


# --- check_pickle_globals


def test_check_pickle_globals_accepts_the_real_torchscript_pickles(torchscript_file):
    with zipfile.ZipFile(torchscript_file) as zf:
        pickles = [n for n in zf.namelist() if n.endswith(".pkl")]
        assert {p.split("/", 1)[1] for p in pickles} >= {"data.pkl", "constants.pkl"}
        for name in pickles:
            check_pickle_globals(zf.read(name), member=name)


def test_check_pickle_globals_accepts_torch_saved_tensors():
    buffer = io.BytesIO()
    torch.save(((torch.zeros(2, 3),), {"w": torch.nn.Parameter(torch.ones(2))}), buffer)
    with zipfile.ZipFile(buffer) as zf:
        name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        check_pickle_globals(zf.read(name))


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_check_pickle_globals_refuses_a_foreign_global(protocol):
    with pytest.raises(UnsafeArtifact, match="'shutil rmtree'"):
        check_pickle_globals(pickle.dumps(shutil.rmtree, protocol=protocol))


def test_check_pickle_globals_names_the_member_in_its_message():
    with pytest.raises(UnsafeArtifact, match=r"^m/data\.pkl references 'os system'"):
        check_pickle_globals(OS_SYSTEM_PICKLE, member="m/data.pkl")


def test_check_pickle_globals_refuses_a_torch_function_that_is_no_tensor_helper():
    data = b"\x80\x02ctorch\nsave\nq\x00."
    with pytest.raises(UnsafeArtifact, match="'torch save'"):
        check_pickle_globals(data)


def test_check_pickle_globals_refuses_a_dotted_name_reaching_through_torch():
    # torch imports os, so (torch, "os.system") would resolve to os.system in protocol 4.
    data = b"\x80\x04\x8c\x05torch\x8c\tos.system\x93\x8c\x04true\x85R."
    with pytest.raises(UnsafeArtifact, match=r"'torch os\.system'"):
        check_pickle_globals(data)


def test_check_pickle_globals_follows_memoised_strings_into_stack_global():
    # "os" and "system" are memoised then popped; harmless decoys are pushed and popped;
    # STACK_GLOBAL then takes the memoised pair.
    data = (
        b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94"
        b"00"
        b"\x8c\x05torch\x8c\x04Size"
        b"00"
        b"h\x00h\x01\x93\x8c\x04true\x85R."
    )
    with pytest.raises(UnsafeArtifact, match="'os system'"):
        check_pickle_globals(data)


def test_check_pickle_globals_refuses_a_stack_global_of_unknown_values():
    data = b"\x80\x04K\x01K\x02\x93."
    with pytest.raises(UnsafeArtifact, match="unreadable global reference"):
        check_pickle_globals(data)


def test_check_pickle_globals_scans_every_pickle_in_the_stream():
    data = pickle.dumps(1, protocol=2) + OS_SYSTEM_PICKLE
    with pytest.raises(UnsafeArtifact, match="'os system'"):
        check_pickle_globals(data)


def test_check_pickle_globals_refuses_the_copyreg_extension_registry():
    with pytest.raises(UnsafeArtifact, match="extension registry"):
        check_pickle_globals(b"\x80\x02\x82\x01.")


def test_check_pickle_globals_reports_a_broken_stream_as_artifact_error():
    with pytest.raises(ArtifactError, match="not a valid pickle stream") as exc:
        check_pickle_globals(b"\x80\x02\xff\xff", member="m/data.pkl")
    assert not isinstance(exc.value, UnsafeArtifact)
