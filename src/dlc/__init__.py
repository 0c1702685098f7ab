"""Discrete Latent Codes. `dlc.Pipeline` is the trained parts of a run as one object
(dlc.generation.pipeline); it is imported on first use, so `import dlc` stays light."""

__all__ = ["Pipeline"]


def __getattr__(name: str):
    if name == "Pipeline":
        from dlc.generation.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'dlc' has no attribute {name!r}")
