"""charserve: character-level models served over HTTP with ONNX Runtime (no torch here)."""
