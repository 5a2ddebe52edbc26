"""Export a trained model to ONNX with its manifest (`python -m training.export <model> ...`).

One module per model (speller, classifier, poet, poet_transformer) writes that model's artifact folder; graphs.py
traces modules to ONNX, onnx_passes.py rewrites the graphs (int8 copies, smaller weight storage), manifest.py writes
the contract.
"""

from training.export.classifier import export_classifier, load_classifier, write_classifier_artifact
from training.export.poet import export_poet, load_poet, write_poet_artifact
from training.export.poet_transformer import (
    export_poet_transformer,
    load_poet_transformer,
    write_poet_transformer_artifact,
)
from training.export.speller import export_speller, load_speller, write_speller_artifact

__all__ = [
    "export_classifier",
    "export_poet",
    "export_poet_transformer",
    "export_speller",
    "load_classifier",
    "load_poet",
    "load_poet_transformer",
    "load_speller",
    "write_classifier_artifact",
    "write_poet_artifact",
    "write_poet_transformer_artifact",
    "write_speller_artifact",
]
