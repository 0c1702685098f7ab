"""Stage `probe`: how much of each target (class label, shape, colour, ...) a linear classifier
reads off the codes, next to the same probe on the encoder's continuous features (the paper's
Table 3 pair: DINOv2 85.9 vs DLC 85.3 top-1 on ImageNet)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dlc import io as dio
from dlc.config import Config, ProbeConfig, SEMConfig, to_dict
from dlc.data.codes import read_codes
from dlc.metrics.probe import fit_options, probe_codes, probe_features, target_classes

log = logging.getLogger(__name__)


def run(cfg: Config, *, codes: str | Path, out: str | Path) -> dict:
    """`dlc probe`: the probes on the extract-codes folder `codes`, into the JSON `out`."""
    return fit_probes(cfg.active.probe, cfg.active.sem, codes, out)


def fit_probes(cfg: ProbeConfig, sem: SEMConfig, codes: str | Path, out: str | Path) -> dict:
    """Fit on codes/<probe.train_split>, score on codes/<probe.test_split>, write out."""
    train_codes, test_codes = Path(codes) / cfg.train_split, Path(codes) / cfg.test_split
    train = read_codes(train_codes, sem.length, sem.vocab, features=sem.extract.features)
    test = read_codes(test_codes, sem.length, sem.vocab, features=sem.extract.features)
    fit = fit_options(cfg)
    results = {}
    for target in cfg.targets:
        for table, path in ((train, train_codes), (test, test_codes)):
            if target not in table.frame:
                raise ValueError(f"{path}: no column {target!r} to probe (probe.targets)")
        y_train, y_test, categories = target_classes(train.frame[target], test.frame[target],
                                                     str(train_codes))
        classes = len(categories)
        row = {"classes": classes,
               "majority": float(np.bincount(y_train).max() / len(y_train))}
        probes = {"codes": probe_codes(train.codes, y_train, test.codes, y_test, sem.vocab,
                                       classes, **fit)}
        if train.features is not None:
            probes["features"] = probe_features(train.features, y_train, test.features, y_test,
                                                classes, **fit)
        for name, result in probes.items():
            row[name] = result.accuracy
            row[f"{name}_lr"] = result.lr
        results[target] = row
        log.info("probe %-10s codes %.3f  features %s  (%d classes)", target, row["codes"],
                 f"{row['features']:.3f}" if "features" in row else "-", classes)
    report = {
        "top1": results, "n_train": len(train), "n_test": len(test),
        "L": sem.length, "V": sem.vocab, "encoder_sha256": train.metadata.get("encoder_sha256"),
        "features": "final-normed CLS + mean patch token" if train.features is not None else None,
        **dio.run_metadata({"probe": to_dict(cfg), "L": sem.length, "V": sem.vocab}),
    }
    dio.write_json(out, report)
    return report
