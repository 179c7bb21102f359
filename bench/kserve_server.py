"""KServe's Python model server on the artifacts mlapp serves, for ``bench/run.py``.

Runs in its own virtual environment (``make kserve-venv``: kserve, torch, onnxruntime,
tokenizers). Each model does the work mlapp's demo handler does, no more and no less: iris
(TorchScript) and digits (ONNX) answer the class probabilities and the predicted label, minilm
tokenizes (padding to the longest text, as ``project.demo.handlers.MiniLMHandler``) and
answers the embedding. Threads: one intra-op thread per runtime, as the mlapp side.

    .venv-kserve/bin/python bench/kserve_server.py --http_port 8200 --root .
    .venv-kserve/bin/python bench/kserve_server.py --http_port 8200 --enable-grpc --grpc_port 8201
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

IRIS_LABELS = ("setosa", "versicolor", "virginica")
DIGIT_LABELS = tuple(str(d) for d in range(10))


def _response(kserve, model, request, outputs):
    # Arrays handed over as they are: KServe encodes each once, as JSON or binary per request.
    infer_outputs = [
        kserve.InferOutput(
            name=name,
            shape=list(array.shape),
            datatype="BYTES" if array.dtype == object else "FP32",
            data=array,
        )
        for name, array in outputs.items()
    ]
    if request.from_grpc and request.use_binary_outputs:
        # KServe 0.21's to_grpc() tests an array's truth value when the request came raw
        # (ValueError): raw outputs are set from the arrays here, as its own examples do.
        for output, array in zip(infer_outputs, outputs.values(), strict=True):
            output.set_data_from_numpy(array, binary_data=True)
    return kserve.InferResponse(
        response_id=request.id or "",
        model_name=model.name,
        infer_outputs=infer_outputs,
        use_binary_outputs=request.use_binary_outputs,
        requested_outputs=request.request_outputs,
    )


def build_models(kserve, root: Path):
    import onnxruntime as ort
    import torch

    torch.set_num_threads(1)

    def session(path: Path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    class Iris(kserve.Model):
        def load(self):
            self.module = torch.jit.load(str(root / "fixtures/iris/model.pt")).eval()
            self.ready = True
            return True

        def predict(self, payload, headers=None):
            x = torch.from_numpy(payload.inputs[0].as_numpy())
            with torch.inference_mode():
                scores = self.module(x).numpy()
            labels = np.asarray(IRIS_LABELS, dtype=object)[scores.argmax(-1)]
            return _response(kserve, self, payload, {"label": labels, "probabilities": scores})

    class Digits(kserve.Model):
        def load(self):
            self.session = session(root / "fixtures/digits/model.onnx")
            self.input_name = self.session.get_inputs()[0].name
            self.ready = True
            return True

        def predict(self, payload, headers=None):
            (scores,) = self.session.run(None, {self.input_name: payload.inputs[0].as_numpy()})
            labels = np.asarray(DIGIT_LABELS, dtype=object)[scores.argmax(-1)]
            return _response(kserve, self, payload, {"label": labels, "probabilities": scores})

    class MiniLM(kserve.Model):
        def load(self):
            from tokenizers import Tokenizer

            minilm = root / "fixtures/build/minilm"
            self.tokenizer = Tokenizer.from_file(str(minilm / "tokenizer.json"))
            self.tokenizer.no_padding()
            self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            self.tokenizer.enable_truncation(max_length=256)
            self.session = session(minilm / "model.onnx")
            self.ready = True
            return True

        def predict(self, payload, headers=None):
            texts = [
                t.decode() if isinstance(t, bytes) else t for t in payload.inputs[0].as_numpy()
            ]
            encodings = self.tokenizer.encode_batch(texts)
            feed = {
                "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
            }
            (embedding,) = self.session.run(["embedding"], feed)
            return _response(kserve, self, payload, {"embedding": embedding})

    return [Iris("iris"), Digits("digits"), MiniLM("minilm")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    # bench/grpc_run.py: KServe's gRPC server too, on its --grpc_port.
    parser.add_argument("--enable-grpc", action="store_true")
    args, rest = parser.parse_known_args()
    # kserve parses sys.argv itself (its own flags, e.g. --http_port) when imported.
    sys.argv = [sys.argv[0], *rest]
    import kserve

    models = build_models(kserve, args.root.resolve())
    for model in models:
        model.load()
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    kserve.ModelServer(enable_grpc=args.enable_grpc, enable_latency_logging=False, workers=1).start(
        models
    )


if __name__ == "__main__":
    main()
