"""The `fit` mode: the poster's training recipe, to check that a faster pipeline did not
change what the model learns.

Epochs over the train split, validation after each, ReduceLROnPlateau (factor 0.1 on the
validation loss) and early stopping implemented in the custom loop, per-class ROC AUC and
their mean, the best weights by mean validation AUC written by rank `CHECKPOINT_RANK` only.

Validation predictions are gathered to every rank, so every rank computes the same loss,
AUC and decisions (learning rate, early stop) without a further collective. Each rank
predicts its element shard of the validation split (every example exactly once across
ranks, the last partial batch kept: bench.input.pipelines), so the metrics cover the whole split.

Stored details (result["details"]["fit"]): the plan, `history` (one entry per epoch:
learning_rate, train_loss, train_s, val_s, val_loss, val_examples, val_auc_mean,
val_auc_per_class, val_auc_undefined, and `elapsed_s`, seconds from the start of training
to the end of that epoch's validation and checkpoint), best_epoch, best_val_auc_mean,
best_val_auc_per_class, checkpoint and `checkpoint_rank`, `validation_examples_per_rank`
(at the best epoch) and `best_validation` (the best epoch's per-example score ranks and
labels, bench.contract.validation_scores, for a bootstrap in the report).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.contract import validation_scores
from converters.labels import LABELS

# CheXNet decays the learning rate by 10 when the validation loss stops falling after an
# epoch: patience 1 epoch.
PLATEAU_FACTOR = 0.1
PLATEAU_PATIENCE = 1
PLATEAU_MIN_DELTA = 1e-4
MIN_LEARNING_RATE = 1e-7
PROBABILITY_EPSILON = 1e-7
# The one rank that writes the best checkpoint (every rank holds the same weights).
CHECKPOINT_RANK = 0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None if one class only."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    # Average rank for tied scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [scores.size]))
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    rank_sum = ranks[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def per_class_auc(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """{per_class: {finding: auc | None}, mean: mean of the defined ones | None, undefined}."""
    per_class = {
        name: roc_auc(labels[:, index], probabilities[:, index])
        for index, name in enumerate(LABELS)
    }
    defined = [value for value in per_class.values() if value is not None]
    return {
        "per_class": per_class,
        "mean": float(np.mean(defined)) if defined else None,
        "classes_defined": len(defined),
        "undefined": [name for name, value in per_class.items() if value is None],
        "undefined_reason": "only positives or only negatives in the validation split",
    }


def binary_cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    clipped = np.clip(
        probabilities.astype(np.float64), PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON
    )
    losses = labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)
    return float(-losses.mean())


@dataclass
class Plateau:
    """ReduceLROnPlateau on a value to minimise, decided once per epoch."""

    factor: float = PLATEAU_FACTOR
    patience: int = PLATEAU_PATIENCE
    min_delta: float = PLATEAU_MIN_DELTA
    best: float = float("inf")
    wait: int = 0

    def update(self, value: float, learning_rate: float) -> float:
        """The learning rate for the next epoch."""
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
            return learning_rate
        self.wait += 1
        if self.wait < self.patience:
            return learning_rate
        self.wait = 0
        return max(learning_rate * self.factor, MIN_LEARNING_RATE)


@dataclass
class FitState:
    """What the loop carries between epochs."""

    learning_rate: float
    best_auc: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    best_validation: dict[str, Any] | None = None
    best_examples_per_rank: list[int] | None = None
    step_s: list[float] = field(default_factory=list)
    warmup_step_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class FitPlan:
    epochs: int
    steps_per_epoch: int
    warmup_steps: int  # the first steps of epoch 0, timed apart
    lr_warmup_steps: int
    base_learning_rate: float
    target_learning_rate: float
    early_stop_patience: int | None


Batches = Iterator[tuple[Any, Any]]


def run_fit(
    plan: FitPlan,
    *,
    train_batches: Batches,
    validation_batches: Callable[[int], Batches],
    step: Callable[[Any, Any], float],
    predict: Callable[[Any], np.ndarray],
    set_learning_rate: Callable[[float], None],
    gather: Callable[[Any], list[Any]],
    save_best: Callable[[int], str | None],
) -> tuple[FitState, dict[str, Any]]:
    """Train `plan.epochs` epochs; returns the state (with step times) and the details."""
    state = FitState(learning_rate=plan.target_learning_rate)
    plateau = Plateau()
    checkpoint: str | None = None
    global_step = 0
    fit_began = time.perf_counter()
    for epoch in range(plan.epochs):
        began = time.perf_counter()
        losses = []
        for _ in range(plan.steps_per_epoch):
            if global_step <= plan.lr_warmup_steps:
                set_learning_rate(_warmed(plan, global_step, state.learning_rate))
            images, labels = next(train_batches)
            step_began = time.perf_counter()
            losses.append(step(images, labels))
            elapsed = time.perf_counter() - step_began
            (state.warmup_step_s if global_step < plan.warmup_steps else state.step_s).append(
                elapsed
            )
            global_step += 1
        train_s = time.perf_counter() - began
        evaluation, scored = _validate(validation_batches(epoch), predict, gather)
        entry = {
            "epoch": epoch,
            "learning_rate": state.learning_rate,
            "train_loss": float(np.mean(losses)),
            "train_s": train_s,
            **evaluation,
        }
        state.history.append(entry)
        mean_auc = evaluation["val_auc_mean"]
        if mean_auc is not None and (state.best_auc is None or mean_auc > state.best_auc):
            state.best_auc, state.best_epoch = mean_auc, epoch
            state.epochs_without_improvement = 0
            checkpoint = save_best(epoch) or checkpoint
            state.best_validation = validation_scores.encode(
                scored.probabilities, scored.labels, order=scored.order
            )
            state.best_examples_per_rank = scored.examples_per_rank
        else:
            state.epochs_without_improvement += 1
        new_rate = plateau.update(evaluation["val_loss"], state.learning_rate)
        if new_rate != state.learning_rate:
            entry["learning_rate_reduced_to"] = new_rate
            state.learning_rate = new_rate
            set_learning_rate(new_rate)
        entry["elapsed_s"] = time.perf_counter() - fit_began
        patience = plan.early_stop_patience
        if patience is not None and state.epochs_without_improvement >= patience:
            state.stopped_early = True
            break
    best = state.history[state.best_epoch] if state.best_epoch is not None else None
    details = {
        "fit": {
            "epochs_planned": plan.epochs,
            "epochs_run": len(state.history),
            "steps_per_epoch": plan.steps_per_epoch,
            "stopped_early": state.stopped_early,
            "early_stop_patience": plan.early_stop_patience,
            "plateau": {
                "monitor": "val_loss",
                "factor": PLATEAU_FACTOR,
                "patience": PLATEAU_PATIENCE,
                "min_delta": PLATEAU_MIN_DELTA,
            },
            "best_epoch": state.best_epoch,
            "best_val_auc_mean": state.best_auc,
            "best_val_auc_per_class": best["val_auc_per_class"] if best else None,
            "checkpoint": checkpoint,
            "checkpoint_rank": CHECKPOINT_RANK,
            "validation_examples_per_rank": state.best_examples_per_rank,
            "best_validation": state.best_validation,
            "history": state.history,
        }
    }
    return state, details


def _warmed(plan: FitPlan, global_step: int, current: float) -> float:
    if global_step >= plan.lr_warmup_steps:
        return current
    return plan.base_learning_rate + (current - plan.base_learning_rate) * (
        global_step / plan.lr_warmup_steps
    )


@dataclass(frozen=True)
class Scored:
    """One validation pass, every rank's examples together."""

    probabilities: np.ndarray
    labels: np.ndarray
    order: str  # "split" or "ranks": see split_order
    examples_per_rank: list[int]


def split_order(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, str]:
    """Every rank's examples in the split's own order, where that can be rebuilt.

    Evaluation shards elements: rank r reads examples r, r + W, r + 2W, ... of the split. If
    the part sizes are those of that sharding, interleaving the parts restores the split's
    order ("split"); otherwise (examples skipped) the parts stay concatenated ("ranks").
    """
    total = sum(len(part) for part in parts)
    workers = len(parts)
    if not all(len(part) == len(range(r, total, workers)) for r, part in enumerate(parts)):
        return np.concatenate(parts), "ranks"
    ordered = np.empty((total, *parts[0].shape[1:]), dtype=parts[0].dtype)
    for rank, part in enumerate(parts):
        ordered[rank::workers] = part
    return ordered, "split"


def _validate(
    batches: Batches, predict: Callable[[Any], np.ndarray], gather: Callable[[Any], list[Any]]
) -> tuple[dict[str, Any], Scored]:
    """Predict this rank's shard, gather every rank's, score on all ranks alike."""
    began = time.perf_counter()
    probabilities, labels = [], []
    for images, batch_labels in batches:
        probabilities.append(np.asarray(predict(images), dtype=np.float32))
        labels.append(np.asarray(batch_labels, dtype=np.float32))
    local = (_stack(probabilities), _stack(labels))
    gathered = gather(local)
    all_probabilities, order = split_order([part[0] for part in gathered])
    all_labels, _ = split_order([part[1] for part in gathered])
    if all_labels.shape[0] == 0:
        raise RuntimeError("the validation split produced no examples on any rank")
    auc = per_class_auc(all_labels, all_probabilities)
    scored = Scored(
        all_probabilities, all_labels, order, [int(part[1].shape[0]) for part in gathered]
    )
    return {
        "val_examples": int(all_labels.shape[0]),
        "val_loss": binary_cross_entropy(all_labels, all_probabilities),
        "val_auc_mean": auc["mean"],
        "val_auc_per_class": auc["per_class"],
        "val_auc_undefined": auc["undefined"],
        "val_s": time.perf_counter() - began,
    }, scored


def _stack(parts: Sequence[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros((0, len(LABELS)), dtype=np.float32)
    return np.concatenate(parts)


def checkpoint_path(output_dir: Path, repeat: int, run_id: str) -> Path:
    return Path(output_dir) / f"checkpoint-r{repeat}-{run_id}.weights.h5"
