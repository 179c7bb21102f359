"""Signatures, datatypes and input coercion (mlapp.runtimes.tensors)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from mlapp.exceptions import ArtifactError, InvalidInput
from mlapp.runtimes.tensors import (
    Signature,
    TensorSpec,
    coerce_input,
    datatype_of,
    signatures_compatible,
)
from tests.artifacts import TWO_IN_SIGNATURE


def spec(datatype: str = "FP32", shape: tuple[int, ...] = (-1, 3), name: str = "x") -> TensorSpec:
    return TensorSpec(name=name, datatype=datatype, shape=shape)


def sig(inputs: list[dict], outputs: list[dict] | None = None) -> Signature:
    outputs = (
        outputs if outputs is not None else [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]
    )
    return Signature.from_dict({"inputs": inputs, "outputs": outputs})


# --- Signature.from_dict / to_dict


def test_signature_round_trips_through_dict():
    data = {
        "inputs": [
            {"name": "ids", "datatype": "INT64", "shape": [-1, 8]},
            {"name": "text", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1, 1]}],
    }
    assert Signature.from_dict(copy.deepcopy(data)).to_dict() == data


def test_signature_from_dict_keeps_order_and_shapes_as_tuples():
    signature = Signature.from_dict(TWO_IN_SIGNATURE)
    assert signature.input_names == ["x"]
    assert signature.output_names == ["y"]
    assert signature.inputs[0] == TensorSpec(name="x", datatype="FP32", shape=(-1, 3))


def test_signature_input_lookup_raises_key_error_for_unknown_name():
    signature = Signature.from_dict(TWO_IN_SIGNATURE)
    assert signature.input("x").shape == (-1, 3)
    with pytest.raises(KeyError):
        signature.input("nope")


def test_signature_refuses_a_non_mapping():
    with pytest.raises(ArtifactError, match="must be an object"):
        Signature.from_dict([{"name": "x"}])


@pytest.mark.parametrize(
    "data",
    [
        {"outputs": []},
        {"inputs": [], "outputs": []},
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]},
        {"inputs": {"name": "x"}, "outputs": []},
    ],
    ids=["no-inputs", "empty-inputs", "no-outputs", "inputs-not-a-list"],
)
def test_signature_refuses_missing_or_empty_tensor_lists(data):
    with pytest.raises(ArtifactError, match="non-empty 'inputs' list"):
        Signature.from_dict(data)


@pytest.mark.parametrize("missing", ["name", "datatype", "shape"])
def test_tensor_spec_refuses_a_missing_key(missing):
    tensor = {"name": "x", "datatype": "FP32", "shape": [-1, 3]}
    del tensor[missing]
    with pytest.raises(ArtifactError, match="needs 'name', 'datatype' and 'shape'"):
        sig([tensor])


def test_tensor_spec_refuses_a_tensor_that_is_not_an_object():
    with pytest.raises(ArtifactError, match="needs 'name', 'datatype' and 'shape'"):
        sig(["x"])


@pytest.mark.parametrize("name", ["", 3, None])
def test_tensor_spec_refuses_an_empty_or_non_string_name(name):
    with pytest.raises(ArtifactError, match="non-empty string"):
        sig([{"name": name, "datatype": "FP32", "shape": [1]}])


def test_tensor_spec_refuses_an_unknown_datatype_and_names_the_tensor():
    with pytest.raises(ArtifactError, match=r"'x' has unknown datatype 'FLOAT32'"):
        sig([{"name": "x", "datatype": "FLOAT32", "shape": [1]}])


@pytest.mark.parametrize(
    "shape",
    ["-1,3", [-2, 3], [1.0, 3], [True, 3], ["3"], None, 3],
    ids=["string", "below-minus-one", "float", "bool", "string-dim", "none", "int"],
)
def test_tensor_spec_refuses_a_bad_shape(shape):
    with pytest.raises(ArtifactError, match="needs a shape as a list of integers"):
        sig([{"name": "x", "datatype": "FP32", "shape": shape}])


def test_tensor_spec_accepts_a_scalar_shape():
    assert sig([{"name": "x", "datatype": "FP32", "shape": []}]).inputs[0].shape == ()


def test_signature_refuses_duplicate_input_names():
    tensor = {"name": "x", "datatype": "FP32", "shape": [-1]}
    with pytest.raises(ArtifactError, match="unique"):
        sig([tensor, dict(tensor)])


def test_signature_refuses_duplicate_output_names():
    out = {"name": "y", "datatype": "FP32", "shape": [-1]}
    with pytest.raises(ArtifactError, match="unique"):
        sig([{"name": "x", "datatype": "FP32", "shape": [-1]}], [out, dict(out)])


def test_signature_allows_an_input_and_an_output_with_the_same_name():
    tensor = {"name": "x", "datatype": "FP32", "shape": [-1]}
    signature = sig([tensor], [dict(tensor)])
    assert signature.input_names == signature.output_names == ["x"]


# --- coerce_input: datatypes


def test_coerce_input_accepts_ints_for_fp32_and_casts_them():
    array = coerce_input(spec("FP32"), [[1, 2, 3]])
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, np.array([[1.0, 2.0, 3.0]], dtype=np.float32))


def test_coerce_input_casts_fp64_values_to_fp32():
    array = coerce_input(spec("FP32"), [[0.5, 1.5, 2.5]])
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, [[0.5, 1.5, 2.5]])


def test_coerce_input_returns_an_array_of_the_right_dtype_unchanged():
    given = np.zeros((2, 3), dtype=np.float32)
    assert coerce_input(spec("FP32"), given) is given


def test_coerce_input_refuses_floats_for_int64():
    with pytest.raises(InvalidInput, match=r"'ids' must be INT64"):
        coerce_input(spec("INT64", (-1,), name="ids"), [1.5, 2.0])


def test_coerce_input_accepts_ints_for_int64():
    array = coerce_input(spec("INT64", (-1,)), [1, 2, 3])
    assert array.dtype == np.int64
    assert array.tolist() == [1, 2, 3]


@pytest.mark.parametrize("datatype", ["FP32", "INT64", "BOOL"])
def test_coerce_input_refuses_strings_for_numeric_tensors(datatype):
    with pytest.raises(InvalidInput, match="must be numeric"):
        coerce_input(spec(datatype, (-1,)), ["a", "b"])


def test_coerce_input_refuses_complex_numbers():
    with pytest.raises(InvalidInput, match="must be numeric"):
        coerce_input(spec("FP64", (-1,)), [1 + 2j])


def test_coerce_input_refuses_a_ragged_list_with_invalid_input():
    with pytest.raises(InvalidInput, match="'x' is not a regular array"):
        coerce_input(spec("FP32", (-1, -1)), [[1.0, 2.0], [3.0]])


def test_coerce_input_refuses_a_ragged_bytes_list_with_invalid_input():
    ragged = [["a", "b"], ["c"]]
    with pytest.raises(InvalidInput, match="'x'"):
        coerce_input(spec("BYTES", (-1, -1)), ragged)


def test_coerce_input_refuses_null_values_for_numeric_tensors():
    with pytest.raises(InvalidInput, match="must be numeric"):
        coerce_input(spec("FP32", (-1,)), [1.0, None])


def test_coerce_input_refuses_int8_values_out_of_range():
    with pytest.raises(InvalidInput, match="out of range for INT8"):
        coerce_input(spec("INT8", (-1,)), [1, 128])


def test_coerce_input_refuses_negative_values_for_unsigned_tensors():
    with pytest.raises(InvalidInput, match="out of range for UINT8"):
        coerce_input(spec("UINT8", (-1,)), [-1, 3])


def test_coerce_input_accepts_int8_bounds():
    array = coerce_input(spec("INT8", (-1,)), [-128, 127])
    assert array.dtype == np.int8
    assert array.tolist() == [-128, 127]


def test_coerce_input_accepts_booleans_for_bool_tensors():
    array = coerce_input(spec("BOOL", (-1,)), [True, False])
    assert array.dtype == np.bool_
    assert array.tolist() == [True, False]


def test_coerce_input_refuses_ints_for_bool_tensors():
    with pytest.raises(InvalidInput, match="must be BOOL"):
        coerce_input(spec("BOOL", (-1,)), [1, 0])


def test_coerce_input_accepts_strings_for_bytes_tensors():
    array = coerce_input(spec("BYTES", (-1,)), ["hello", b"raw"])
    assert array.dtype == object
    assert array.tolist() == ["hello", b"raw"]


def test_coerce_input_refuses_numbers_for_bytes_tensors():
    with pytest.raises(InvalidInput, match="must hold strings"):
        coerce_input(spec("BYTES", (-1,)), ["a", 3])


# --- coerce_input: shapes


def test_coerce_input_refuses_the_wrong_rank_naming_tensor_and_shapes():
    with pytest.raises(InvalidInput) as exc:
        coerce_input(spec("FP32", (-1, 3), name="features"), [1.0, 2.0, 3.0])
    message = exc.value.message
    assert "'features'" in message
    assert "[3]" in message
    assert "[-1, 3]" in message


def test_coerce_input_refuses_the_wrong_fixed_dim_naming_tensor_and_shapes():
    with pytest.raises(InvalidInput) as exc:
        coerce_input(spec("FP32", (-1, 3), name="features"), [[1.0, 2.0]])
    message = exc.value.message
    assert "'features' has shape [1, 2]" in message
    assert "expected [-1, 3]" in message


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_coerce_input_accepts_any_size_for_a_variable_dim(rows):
    assert coerce_input(spec("FP32", (-1, 3)), np.zeros((rows, 3))).shape == (rows, 3)


def test_coerce_input_accepts_any_sizes_when_every_dim_is_variable():
    assert coerce_input(spec("FP32", (-1, -1)), np.zeros((2, 9))).shape == (2, 9)


def test_coerce_input_refuses_a_scalar_for_a_batched_tensor():
    with pytest.raises(InvalidInput, match=r"has shape \[\]"):
        coerce_input(spec("FP32", (-1,)), 3.0)


# --- accepts_shape


def test_accepts_shape_needs_the_same_rank_and_the_fixed_dims():
    tensor = spec("FP32", (-1, 3))
    assert tensor.accepts_shape((4, 3))
    assert not tensor.accepts_shape((4, 2))
    assert not tensor.accepts_shape((4, 3, 1))


# --- signatures_compatible


def test_signatures_compatible_for_identical_signatures():
    assert signatures_compatible(sig(TWO_IN_SIGNATURE["inputs"]), sig(TWO_IN_SIGNATURE["inputs"]))


def test_signatures_compatible_when_a_declared_fixed_dim_refines_a_variable_one():
    actual = sig([{"name": "x", "datatype": "FP32", "shape": [-1, -1]}])
    declared = sig([{"name": "x", "datatype": "FP32", "shape": [-1, 3]}])
    assert signatures_compatible(declared, actual)


def test_signatures_incompatible_when_a_declared_variable_dim_widens_a_fixed_one():
    actual = sig([{"name": "x", "datatype": "FP32", "shape": [-1, 3]}])
    declared = sig([{"name": "x", "datatype": "FP32", "shape": [-1, -1]}])
    assert not signatures_compatible(declared, actual)


def test_signatures_incompatible_on_a_different_fixed_dim():
    actual = sig([{"name": "x", "datatype": "FP32", "shape": [-1, 3]}])
    declared = sig([{"name": "x", "datatype": "FP32", "shape": [-1, 4]}])
    assert not signatures_compatible(declared, actual)


@pytest.mark.parametrize(
    "declared",
    [
        {"name": "z", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "x", "datatype": "FP64", "shape": [-1, 3]},
        {"name": "x", "datatype": "FP32", "shape": [-1, 3, 1]},
    ],
    ids=["name", "datatype", "rank"],
)
def test_signatures_incompatible_on_a_different_input(declared):
    actual = sig([{"name": "x", "datatype": "FP32", "shape": [-1, 3]}])
    assert not signatures_compatible(sig([declared]), actual)


def test_signatures_incompatible_on_a_different_output():
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    actual = sig(inputs, [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}])
    declared = sig(inputs, [{"name": "y", "datatype": "FP32", "shape": [-1, 5]}])
    assert not signatures_compatible(declared, actual)


def test_signatures_incompatible_on_a_different_number_of_inputs():
    one = [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    two = [*one, {"name": "m", "datatype": "INT64", "shape": [-1]}]
    assert not signatures_compatible(sig(two), sig(one))
    assert not signatures_compatible(sig(one), sig(two))


# --- datatype_of


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        (np.float32, "FP32"),
        (np.float64, "FP64"),
        (np.float16, "FP16"),
        (np.int64, "INT64"),
        (np.int8, "INT8"),
        (np.uint16, "UINT16"),
        (np.bool_, "BOOL"),
    ],
)
def test_datatype_of_names_numeric_arrays(dtype, datatype):
    assert datatype_of(np.zeros(2, dtype=dtype)) == datatype


@pytest.mark.parametrize(
    "array",
    [np.array(["a"]), np.array([b"a"]), np.array(["a"], dtype=object)],
    ids=["str", "bytes", "object"],
)
def test_datatype_of_names_string_arrays_bytes(array):
    assert datatype_of(array) == "BYTES"


def test_datatype_of_refuses_an_unsupported_dtype():
    with pytest.raises(InvalidInput, match="Unsupported array dtype complex64"):
        datatype_of(np.zeros(2, dtype=np.complex64))
