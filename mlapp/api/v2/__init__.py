"""Open Inference Protocol V2 (REST), as KServe and Triton specify it."""
