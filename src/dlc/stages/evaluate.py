"""Stage `evaluate`: generated images (an ADM-style samples.npz) against the real reference in
every feature space of evaluate.extractors (Frechet distance, KID, precision/recall, Vendi; with
Inception also sFID and IS), into one results JSON. The work is
`dlc.metrics.evaluation.evaluate`, shared with the eta sweep; its docstring has the schema.
"""

from dlc.metrics.evaluation import evaluate

__all__ = ["evaluate"]
