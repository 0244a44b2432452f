"""What fit mode stores for the report: per-epoch wall time, the checkpoint's rank, every
validation example scored once and in the split's order, the best epoch's scores.

`run_fit` runs here with plain functions standing in for the model and for Horovod's
allgather (two ranks' shards, as the evaluation pipeline deals them); the last test checks
the real evaluation pipeline deals them that way.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.contract import validation_scores
from bench.job import fit
from converters.labels import LABELS

EXAMPLES, WORKERS = 37, 2


def _split() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    labels = (rng.random((EXAMPLES, len(LABELS))) < 0.4).astype(np.float32)
    images = np.arange(EXAMPLES, dtype=np.float32)  # an image is its index in the split
    return images, labels


def _run(epochs: int = 3) -> tuple[fit.FitState, dict, list[int]]:
    images, labels = _split()
    rng = np.random.default_rng(5)
    noise = rng.normal(size=labels.shape)
    saved: list[int] = []
    quality = iter([0.5, 2.0, 1.0])  # epoch 1 best, then worse

    state = {"separation": 0.0}

    def step(batch_images, batch_labels) -> float:
        return 0.1

    def predict(batch_images: np.ndarray) -> np.ndarray:
        index = batch_images.astype(int)
        logits = state["separation"] * labels[index] + noise[index]
        return 1.0 / (1.0 + np.exp(-logits))

    def shard(rank: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        ids = np.arange(rank, EXAMPLES, WORKERS)  # element sharding, the last batch partial
        for start in range(0, len(ids), 8):
            chunk = ids[start : start + 8]
            yield images[chunk], labels[chunk]

    def validation_batches(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        state["separation"] = next(quality)
        return shard(0)

    def gather(local):
        # Rank 0's part is what this process predicted; rank 1 predicts its own shard.
        other = [(predict(x), y) for x, y in shard(1)]
        remote = (np.concatenate([p for p, _ in other]), np.concatenate([y for _, y in other]))
        return [local, remote]

    def train_batches():
        while True:
            yield images[:8], labels[:8]

    plan = fit.FitPlan(
        epochs=epochs,
        steps_per_epoch=2,
        warmup_steps=1,
        lr_warmup_steps=0,
        base_learning_rate=1e-3,
        target_learning_rate=1e-3,
        early_stop_patience=None,
    )
    run_state, details = fit.run_fit(
        plan,
        train_batches=train_batches(),
        validation_batches=validation_batches,
        step=step,
        predict=predict,
        set_learning_rate=lambda rate: None,
        gather=gather,
        save_best=lambda epoch: saved.append(epoch) or f"ckpt-{epoch}",
    )
    return run_state, details["fit"], saved


def test_fit_details_carry_what_the_report_needs() -> None:
    _, details, saved = _run()
    history = details["history"]
    assert [entry["val_examples"] for entry in history] == [EXAMPLES] * 3
    elapsed = [entry["elapsed_s"] for entry in history]
    assert all(later > earlier for earlier, later in itertools.pairwise(elapsed))
    assert all(
        entry["elapsed_s"] >= entry["train_s"] + entry["val_s"] for entry in history
    )  # the epoch's own time is inside its wall time
    assert details["best_epoch"] == 1 and saved == [0, 1]
    assert details["checkpoint"] == "ckpt-1" and details["checkpoint_rank"] == fit.CHECKPOINT_RANK
    assert details["validation_examples_per_rank"] == [19, 18]
    stored = validation_scores.decode(details["best_validation"])
    assert stored.order == "split" and stored.examples == EXAMPLES
    _, labels = _split()
    np.testing.assert_array_equal(stored.labels, labels)  # the split's order, rebuilt
    again = fit.per_class_auc(stored.labels, stored.ranks.astype(np.float64))
    assert again["mean"] == pytest.approx(details["best_val_auc_mean"])
    assert again["per_class"] == pytest.approx(details["best_val_auc_per_class"])


def test_split_order_interleaves_element_shards_and_gives_up_on_uneven_ones() -> None:
    whole = np.arange(11)
    parts = [whole[rank::3] for rank in range(3)]
    ordered, order = fit.split_order(parts)
    assert order == "split"
    np.testing.assert_array_equal(ordered, whole)
    skipped = [parts[0][:-1], parts[1], parts[2]]  # an example skipped on rank 0
    concatenated, order = fit.split_order(skipped)
    assert order == "ranks"
    np.testing.assert_array_equal(concatenated, np.concatenate(skipped))


def _digests(dataset) -> list[bytes]:
    return [image.tobytes() for images, _ in dataset.as_numpy_iterator() for image in images]


@pytest.mark.slow
def test_real_evaluation_shards_rebuild_the_split_order(
    synth_root: Path, records_png: Path
) -> None:
    """The order `split_order` assumes is the one the evaluation pipelines deal."""
    from bench.input.pipelines import PipelineOptions, build_dataset, raw_source, tfrecord_source

    options = PipelineOptions(kind="tuned", image_size=32, batch_size=8, training=False)
    for workers, source in (
        (2, raw_source(synth_root, "val")),
        (3, tfrecord_source(records_png, "val")),
    ):
        whole = _digests(build_dataset(source, options))
        parts = [
            np.array(
                _digests(build_dataset(source, options, worker_index=rank, num_workers=workers)),
                dtype=object,
            )
            for rank in range(workers)
        ]
        ordered, order = fit.split_order(parts)
        assert order == "split", source.format
        assert list(ordered) == whole, source.format
