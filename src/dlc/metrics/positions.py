"""Where an attribute lives in the code: the mutual information between the token at each
position and an attribute of the image, from a codes table (plug-in estimate, in nats):

    I(c_l; a) = sum_{t, y} p(c_l = t, a = y) log [p(c_l = t, a = y) / (p(c_l = t) p(a = y))]

normalised by H(a) into [0, 1] (1: the position's token determines the attribute). A position
carries the attribute whose normalised information there is the largest (0 everywhere:
none). The plug-in estimate is biased upward by about (V_l - 1)(A - 1) / (2 N) nats for V_l
tokens in use and A values: with N rows well above V * A it is small.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def entropy(labels: np.ndarray) -> float:
    """H(a) in nats of the empirical distribution of `labels`."""
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, L) codes and (N,) labels of any type -> (L,) I(c_l; a) in nats."""
    codes = np.asarray(codes, dtype=np.int64)
    n, length = codes.shape
    _, label_ids = np.unique(np.asarray(labels), return_inverse=True)
    values, vocab = label_ids.max() + 1, codes.max() + 1
    # joint counts (L, V, A) from one bincount over flat indices l (V A) + t A + a
    flat = (np.arange(length)[None] * vocab + codes) * values + label_ids[:, None]
    joint = np.bincount(flat.ravel(), minlength=length * vocab * values)
    joint = joint.reshape(length, vocab, values) / n
    p_token, p_label = joint.sum(2, keepdims=True), joint.sum(1, keepdims=True)
    ratio = np.divide(joint, p_token * p_label, out=np.ones_like(joint), where=joint > 0)
    return (joint * np.log(ratio)).sum((1, 2))


def position_map(codes: np.ndarray, frame: pd.DataFrame, attributes: list[str]) -> pd.DataFrame:
    """(L rows, one column per attribute) I(c_l; a) / H(a) of the table's codes and columns."""
    missing = [a for a in attributes if a not in frame.columns]
    if missing:
        raise ValueError(f"the codes table has no column {missing[0]!r} (attributes: "
                         f"{attributes})")
    return pd.DataFrame({a: mutual_information(codes, frame[a].to_numpy())
                         / max(entropy(frame[a].to_numpy()), 1e-12) for a in attributes})


def carrying(information: pd.DataFrame, attribute: str) -> np.ndarray:
    """(L,) bool: the positions where `attribute` has the largest normalised information of
    the map's attributes, and some."""
    if attribute not in information.columns:
        raise ValueError(f"no attribute {attribute!r} in the position map "
                         f"({list(information.columns)})")
    mine = information[attribute].to_numpy()
    return (mine > 0) & (mine >= information.to_numpy().max(1))
