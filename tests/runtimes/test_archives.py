"""Damaged and hostile zip archives are refused with an ArtifactError, never another error."""

from __future__ import annotations

import random
import zipfile

import pytest

from mlapp.exceptions import ArtifactError
from mlapp.runtimes.archives import EXPANSION_SLACK, check_member_name
from mlapp.runtimes.detect import detect_format
from tests import artifacts


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "a/../../x",
        "/etc/passwd",
        "\\\\server\\share",
        "C:/x",
        "a\\b",
        "a\x00b",
        "a/./b",
        "",
    ],
)
def test_names_a_loader_could_resolve_outside_the_archive_are_refused(name):
    with pytest.raises(ArtifactError):
        check_member_name(name)


@pytest.mark.parametrize("name", ["affine/data.pkl", "affine/code/__torch__/m.py", "a/.data/v"])
def test_ordinary_member_names_pass(name):
    check_member_name(name)


@pytest.mark.parametrize("build", [artifacts.torchscript, artifacts.torch_export])
def test_every_mutation_of_a_real_archive_is_a_format_or_an_artifact_error(
    build, tmp_path, reliability
):
    # 300 seeded mutations (byte flips, truncations, spliced garbage) of a real archive:
    # detection returns a format or refuses with a message; nothing else escapes (a stray
    # zipfile, zlib, struct or UnicodeDecodeError would be a 500 on the upload paths).
    original = build(tmp_path / "original").read_bytes()
    rng = random.Random(19)
    mutant = tmp_path / "mutant"
    outcomes = {"accepted": 0, "refused": 0}
    messages: list[str] = []
    for _ in range(300):
        data = bytearray(original)
        how = rng.choice(["flip", "truncate", "splice"])
        if how == "flip":
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif how == "truncate":
            data = data[: rng.randrange(1, len(data))] + data[-22:]
        else:
            at = rng.randrange(len(data))
            data[at : at + 16] = rng.randbytes(16)
        mutant.write_bytes(bytes(data))
        try:
            detect_format(mutant)
        except ArtifactError as exc:
            outcomes["refused"] += 1
            messages.append(exc.message)
        else:
            outcomes["accepted"] += 1
    assert outcomes["refused"] > 0
    assert all(messages)
    reliability.add(
        "artifacts",
        "mutated TorchScript and .pt2 archives (flips, truncations, splices)",
        tried=300,
        bad=0,  # anything but a format or an ArtifactError failed the test above
        unit="errors other than a 4xx refusal",
    )


def test_declared_sizes_far_beyond_the_archive_are_refused_before_inflating(tmp_path):
    path = tmp_path / "wide.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m/data.pkl", b"\x80\x02N.")
        zf.writestr("m/code/__torch__.py", b"")
        zf.writestr("m/data/0", bytes(EXPANSION_SLACK + 1024 * 1024))
    with pytest.raises(ArtifactError, match="zip bomb"):
        detect_format(path)
