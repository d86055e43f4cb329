"""``zol2l benchmark``: a held-out suite for the general ZO-LSTM, with peers from other
libraries counted through the same oracle (:mod:`zol2l.benchmark.suite`)."""
