"""rnnbench: GRU or LSTM - which, when, and at what cost?"""

__version__ = "0.1.0"
