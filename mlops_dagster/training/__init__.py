"""Training: time-ordered holdout, the estimator pipeline, and holdout metrics (sklearn, imported lazily)."""

from mlops_dagster.training.train import TrainingResult, evaluate, split_holdout, train_candidate

__all__ = ["TrainingResult", "evaluate", "split_holdout", "train_candidate"]
