"""One training loop for a local process, torchrun (DDP) and Ray Train."""

from twins.train.callbacks import Callback, Checkpointing, EarlyStopping, ProgressBar
from twins.train.dist import ClusterEnv, DDPStrategy, Strategy, detect_env, make_strategy
from twins.train.loop import FitResult, Trainer
from twins.train.sampler import GlobalBatchSampler, ShardedBatchSampler, shard_indices

__all__ = [
    "Callback",
    "Checkpointing",
    "ClusterEnv",
    "DDPStrategy",
    "EarlyStopping",
    "FitResult",
    "GlobalBatchSampler",
    "ProgressBar",
    "ShardedBatchSampler",
    "Strategy",
    "Trainer",
    "detect_env",
    "make_strategy",
    "shard_indices",
]
