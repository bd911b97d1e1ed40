"""Training the defect model with model selection by stratified k-fold cross-validation.

One small validation split of AI4I holds some forty failures: a threshold and a stopping
point chosen on it fit those rows rather than the process (0.89 F1 on its split, 0.70 on
unseen rows). Here every choice is made on out-of-fold predictions over all training rows:

1. ``lightgbm.cv`` trains one model per fold and stops boosting when the mean held-out log
   loss has not improved for ``patience`` rounds; the best round count is kept.
2. Each fold model predicts the rows it did not train on; the decision threshold is the one
   with the highest F1 on these out-of-fold probabilities, and the figures of every fold at
   that threshold are stored with the model. They are selection figures (the rounds and the
   threshold were chosen on the same predictions), a little optimistic; an estimate without
   that bias is ``benchmarks/bench_sensors.py``'s nested cross-validation.
3. The k fold models are the served ensemble (their probabilities averaged).

The failure-mode head goes through the same steps on the failed rows (multiclass).
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from models.data import FAILURE_MODES, SensorData
from models.errors import DataError
from models.sensor_model import SensorModel, features, reference_reading
from models.training.fitting import FitResult
from models.training.metrics import best_f1_threshold, sensor_figures, sensor_metrics
from models.training.options import TrainOptions

# High-resolution histograms: a limit such as 8.6 K or 3,500 W must fall on a bin edge for a
# tree to split there. Chosen by nested 5-fold cross-validation of split_data.py's training
# rows of AI4I (the held-out rows unseen), where 4,095 bins beat LightGBM's default 255
# (benchmarks/bench_sensors.py).
_TREE_PARAMS = {"max_bin": 4095, "min_data_in_bin": 1, "min_data_in_leaf": 5}


def _params(options: TrainOptions, **extra: object) -> dict[str, object]:
    return {
        **_TREE_PARAMS,
        "learning_rate": options.learning_rate,
        "num_leaves": options.num_leaves,
        "seed": options.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
        **extra,
    }


def _cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    params: dict[str, object],
    options: TrainOptions,
    classes: int = 1,
) -> tuple[list[lgb.Booster], np.ndarray, FitResult]:
    """Fold models cut at the best mean round, their out-of-fold predictions ((n,) for a
    binary objective, (n, ``classes``) for a multiclass one) and the fit."""
    assert options.epochs and options.patience
    result = lgb.cv(
        params,
        lgb.Dataset(x, y, free_raw_data=False),
        num_boost_round=options.epochs,
        folds=folds,
        callbacks=[lgb.early_stopping(options.patience, verbose=False)],
        return_cvbooster=True,
    )
    # lightgbm cuts the curve at the best round when early stopping ends the run.
    (curve,) = [v for k, v in result.items() if k.endswith("logloss-mean")]
    best = int(np.argmin(curve)) + 1
    rounds_run = len(curve) if len(curve) > best else min(options.epochs, best + options.patience)
    members = [
        lgb.Booster(model_str=b.model_to_string(num_iteration=best))
        for b in result["cvbooster"].boosters
    ]
    oof = np.zeros((len(y), classes))
    for member, (_, held_out) in zip(members, folds, strict=True):
        oof[held_out] = member.predict(x[held_out]).reshape(len(held_out), -1)
    history = [round(-float(v), 5) for v in curve]
    fit = FitResult(history[best - 1], best, rounds_run, history)
    return members, oof.squeeze(1) if oof.shape[1] == 1 else oof, fit


def train_defect(data: SensorData, options: TrainOptions) -> tuple[SensorModel, FitResult]:
    """Cross-validate and train the defect model on ``data``; return it and the failure
    head's fit (best round, held-out negative log loss per round).

    Raises DataError when fewer than two rows failed (nothing to cross-validate)."""
    assert options.folds and options.learning_rate
    x, y = features(data.readings), np.asarray(data.failure)
    failures = int(y.sum())
    if failures < 2:
        raise DataError(f"{failures} failed rows: the defect model needs two or more")
    k = min(options.folds, failures)
    splitter = StratifiedKFold(k, shuffle=True, random_state=options.seed)
    folds = list(splitter.split(x, y))
    weight = {"none": 1.0, "sqrt": ((len(y) - failures) / failures) ** 0.5}.get(
        options.class_weight, (len(y) - failures) / failures
    )
    params = _params(options, objective="binary", scale_pos_weight=weight)
    failure, oof, fit = _cross_validate(x, y, folds, params, options)
    threshold = best_f1_threshold(oof, y)

    # Modes: the first mode of each failed row whose mode is known, in FAILURE_MODES order.
    moded = [i for i, (f, m) in enumerate(zip(y, data.modes, strict=True)) if f and m]
    mode_members: list[lgb.Booster] = []
    oof_modes = np.full((len(y), len(FAILURE_MODES)), 1 / len(FAILURE_MODES))
    if len(moded) >= 2 * k:
        mode_y = np.array([FAILURE_MODES.index(data.modes[i][0]) for i in moded])
        mode_folds = list(KFold(k, shuffle=True, random_state=options.seed).split(moded))
        mode_params = _params(options, objective="multiclass", num_class=len(FAILURE_MODES))
        mode_members, oof_moded, _ = _cross_validate(
            x[moded], mode_y, mode_folds, mode_params, options, len(FAILURE_MODES)
        )
        oof_modes[moded] = oof_moded
    cross_validation = {
        "folds": k,
        "rounds": fit.best_epoch,
        "threshold": threshold,
        "out_of_fold": sensor_figures(oof, oof_modes, threshold, data),
        "per_fold": [sensor_metrics(oof[rows], threshold, y[rows]) for _, rows in folds],
    }
    per_fold_f1 = [fold["f1"] for fold in cross_validation["per_fold"]]
    cross_validation["f1_mean"] = float(np.mean(per_fold_f1))
    cross_validation["f1_std"] = float(np.std(per_fold_f1))
    reference = reference_reading(data.readings)
    return SensorModel(failure, mode_members, threshold, cross_validation, reference), fit


def sensor_validation_metrics(model: SensorModel, data: SensorData) -> dict:
    """The model's figures on held-out ``data`` (``models.training.metrics.sensor_figures``)."""
    failure, modes = model.predict_proba(features(data.readings))
    return sensor_figures(failure, modes, model.threshold, data)
