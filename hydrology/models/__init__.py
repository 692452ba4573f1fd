"""Drought forecast models: a per-cell LSTM surrogate and a ConvLSTM over space-time tiles."""

from hydrology.models.convlstm import ConvLSTMForecaster
from hydrology.models.lstm import CellLSTM

__all__ = ["CellLSTM", "ConvLSTMForecaster"]
