"""ZO-LSTM: the learned zeroth-order optimizer of Ruan et al. (2020), its RNNs and weights."""

from zol2l.learned.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    resolve,
    save_checkpoint,
)
from zol2l.learned.rnn import QueryRNN, RNNConfig, UpdateRNN, mix_and_normalize

__all__ = [
    "Checkpoint", "CheckpointError", "QueryRNN", "RNNConfig", "UpdateRNN", "load_checkpoint",
    "mix_and_normalize", "resolve", "save_checkpoint",
]
