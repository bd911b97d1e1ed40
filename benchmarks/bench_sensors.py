"""The defect model, selected and measured without looking at the rows it is scored on.

    python benchmarks/split_data.py /tmp/splits          # once, before any choice is made
    python benchmarks/bench_sensors.py --train /tmp/splits/ai4i/train.csv \\
        [--held-out /tmp/splits/ai4i/validation.csv] [--out benchmarks/results/sensors.json]

1. Nested cross-validation on the training rows, the same outer folds for every candidate:
   each candidate is trained on four fifths, chooses its threshold (and its boosting rounds)
   by an inner cross-validation of those rows alone, and decides on the fifth it never saw.
   The F1 of those decisions over all rows, and its spread across the folds, are the figures.
   Candidates: the project's model (``models.training.train_defect``: LightGBM on the physics
   features), scikit-learn's histogram gradient boosting on the same features and on the raw
   columns. The ceiling beside them: flagging exactly the rows whose failure has a mode that
   follows from the reading (HDF, PWF, OSF); tool wear (TWF), random and unnamed failures
   cannot be told from one reading.
2. The project's model trained on every training row, as ``signalyard train`` does: its
   out-of-fold figures, per-mode recall, training time, and readings/s at batch sizes 1, 64
   and 256 through the engine the pipeline scores with.
3. With ``--held-out``: the same model's figures on rows no choice was made on.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from recording import dict_table, record
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from models.data import SensorData, read_readings
from models.sensor_model import features
from models.serving.sensor_inference import SensorEngine
from models.splits import subset
from models.training.metrics import best_f1_threshold
from models.training.options import TrainOptions
from models.training.train_defect import sensor_validation_metrics, train_defect

# A candidate: train on rows, return P(failure) of the held-out rows and its threshold.
Candidate = Callable[[SensorData, SensorData], tuple[np.ndarray, float]]
RAW_COLUMNS = [0, 1, 2, 3, 4, 9, 10, 11]  # the readings and the machine type, no physics
DETERMINISTIC_MODES = ("HDF", "PWF", "OSF")


def project(options: TrainOptions) -> Candidate:
    def run(train: SensorData, test: SensorData) -> tuple[np.ndarray, float]:
        model, _ = train_defect(train, options)
        return model.failure_probability(features(test.readings)), model.threshold

    return run


def histogram_gbdt(columns: list[int] | None, folds: int, seed: int) -> Candidate:
    def fit_predict(x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        x, x_test = (x, x_test) if columns is None else (x[:, columns], x_test[:, columns])
        model = HistGradientBoostingClassifier(random_state=seed).fit(x, y)
        return model.predict_proba(x_test)[:, 1]

    def run(train: SensorData, test: SensorData) -> tuple[np.ndarray, float]:
        x, y = features(train.readings), np.asarray(train.failure)
        inner = np.zeros(len(y))
        for fit_rows, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
            inner[held] = fit_predict(x[fit_rows], y[fit_rows], x[held])
        return fit_predict(x, y, features(test.readings)), best_f1_threshold(inner, y)

    return run


def nested(candidate: Candidate, data: SensorData, folds: int, seed: int) -> dict:
    y = np.asarray(data.failure)
    probability, decided, per_fold = np.zeros(len(y)), np.zeros(len(y), dtype=int), []
    started = time.monotonic()
    for train_rows, test_rows in StratifiedKFold(folds, shuffle=True, random_state=seed).split(
        np.zeros(len(y)), y
    ):
        p, threshold = candidate(subset(data, train_rows), subset(data, test_rows))
        probability[test_rows], decided[test_rows] = p, p >= threshold
        per_fold.append(float(f1_score(y[test_rows], decided[test_rows])))
    return {
        "f1": float(f1_score(y, decided)),
        "precision": float(precision_score(y, decided)),
        "recall": float(recall_score(y, decided)),
        "roc_auc": float(roc_auc_score(y, probability)),
        "fold_f1": per_fold,
        "fold_f1_mean": float(np.mean(per_fold)),
        "fold_f1_std": float(np.std(per_fold)),
        "seconds": round(time.monotonic() - started, 1),
    }


def ceiling(data: SensorData) -> float:
    flagged = [int(any(m in DETERMINISTIC_MODES for m in modes)) for modes in data.modes]
    return float(f1_score(data.failure, flagged))


def readings_per_second(engine: SensorEngine, data: SensorData, batch: int) -> float:
    rows = (data.readings * (1 + 4096 // len(data.readings)))[: max(batch * 20, 2048)]
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        engine.decide(rows[start : start + batch])
    return len(rows) / (time.perf_counter() - started)


def modes_table(figures: dict) -> str:
    return ", ".join(
        f"{mode} {row['recall']:.2f} (n={row['n']})" for mode, row in figures["mode_recall"].items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--held-out", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/sensors_model.json")
    args = parser.parse_args()

    data = read_readings(args.train)
    options = TrainOptions(show_progress=False).resolved("defect")
    inner = options.folds
    candidates: dict[str, Candidate] = {
        "lightgbm, physics features (served)": project(options),
        "sklearn histogram GBDT, physics features": histogram_gbdt(None, inner, args.seed),
        "sklearn histogram GBDT, raw columns": histogram_gbdt(RAW_COLUMNS, inner, args.seed),
    }
    report: dict = {"train": str(args.train), "rows": len(data.failure), "nested": {}}
    print(f"{args.train}: {len(data.failure)} rows, {sum(data.failure)} failures")
    print(f"\nnested {args.folds}-fold cross-validation (threshold chosen inside each fold)")
    for name, candidate in candidates.items():
        figures = nested(candidate, data, args.folds, args.seed)
        report["nested"][name] = figures
        print(
            f"  {name:42s} F1 {figures['f1']:.3f}  (P {figures['precision']:.3f} "
            f"R {figures['recall']:.3f})  folds {figures['fold_f1_mean']:.3f} ± "
            f"{figures['fold_f1_std']:.3f} [{min(figures['fold_f1']):.3f}, "
            f"{max(figures['fold_f1']):.3f}]  AUC {figures['roc_auc']:.3f}  {figures['seconds']}s"
        )
    report["ceiling_f1"] = ceiling(data)
    print(f"  {'ceiling: flag exactly the HDF/PWF/OSF rows':42s} F1 {report['ceiling_f1']:.3f}")

    started = time.monotonic()
    model, _ = train_defect(data, options)
    cv = model.cross_validation
    report["served"] = {"seconds": round(time.monotonic() - started, 1), "cross_validation": cv}
    oof = cv["out_of_fold"]
    print(
        f"\nserved model on all {len(data.failure)} rows: {report['served']['seconds']} s, "
        f"{cv['rounds']} rounds, threshold {cv['threshold']:.3f}; out of fold F1 {oof['f1']:.3f} "
        f"(folds {cv['f1_mean']:.3f} ± {cv['f1_std']:.3f}), mode accuracy on failures "
        f"{oof['mode_accuracy']:.3f}\n  per-mode recall: {modes_table(oof)}"
    )
    engine = SensorEngine(model)
    speed = {str(b): round(readings_per_second(engine, data, b)) for b in (1, 64, 256)}
    report["served"]["readings_per_s"] = speed
    print("  readings/s by batch size: " + ", ".join(f"{b}: {v:,}" for b, v in speed.items()))

    if args.held_out:
        held_out = read_readings(args.held_out)
        figures = sensor_validation_metrics(model, held_out)
        report["held_out"] = {"path": str(args.held_out), **figures}
        print(
            f"\nheld out ({args.held_out}, {figures['n']} rows, {sum(held_out.failure)} "
            f"failures): F1 {figures['f1']:.3f} (P {figures['precision']:.3f} R "
            f"{figures['recall']:.3f}, AUC {figures['roc_auc']:.3f}), mode accuracy on "
            f"failures {figures['mode_accuracy']:.3f}, ceiling {ceiling(held_out):.3f}\n"
            f"  per-mode recall: {modes_table(figures)}"
        )
    quality = [{"rows": "out of fold", **oof}]
    if args.held_out:
        quality.append({"rows": f"held out ({args.held_out})", **report["held_out"]})
    record(
        "sensors_model",
        "The sensors model: cross-validated and held-out quality, readings/s",
        report,
        out=args.out,
        tables=[
            dict_table(quality),
            {
                "title": "Readings/s by batch size",
                "columns": list(speed),
                "rows": [list(speed.values())],
            },
        ],
    )


if __name__ == "__main__":
    main()
