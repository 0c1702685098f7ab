"""Stage `sample-dit`: a codes folder decoded into images by a DiT run and the VAE.

Batch b of the first dit.sample.samples codes is sampled with a generator seeded by (seed, b);
task k of n takes the batches b with b mod n = k; a rerun keeps every finished batch; the
outputs (samples.npz, images/, samples.json with the judge's agreement, grid.png) are assembled
once every batch exists. The work is `dlc.generation.images.generate`, shared with the stages
that decode codes they made.
"""

from dlc.generation.images import generate

__all__ = ["generate"]
