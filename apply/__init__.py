"""Applying finished models: the layer above ``search`` (it consumes trials and searches).

- :mod:`apply.inference`: load a finished trial (``weights_only`` checkpoint, its channel
  statistics, its temperature) as a model that turns raw cut-outs into merger probabilities.
- :mod:`apply.predict`: CLI ``python apply/predict.py``: a catalogue (CSV, Parquet, JSON) of
  cut-outs in any of the four formats of :mod:`galaxies.cutouts`, from a trial, a search's
  selected trial or a top-k ensemble.
- :mod:`apply.calibrate`: CLI ``python apply/calibrate.py``: temperature scaling of finished
  trials on their source validation split (``calibration.json`` beside the record).
- :mod:`apply.calibration`: the formulas: temperature fit, expected calibration error,
  reliability bins.
- :mod:`apply.fit_ood`: CLI ``python apply/fit_ood.py``: the out-of-distribution reference of
  finished trials on their target train and validation splits (``ood_reference.npz``).
- :mod:`apply.ood`: the formulas: Mahalanobis distance of penultimate-layer features
  (Ledoit-Wolf covariance), conformal threshold, ensemble score; reading the reference.

It imports ``galaxies``, ``models``, ``training`` and ``search`` (model selection), never
``analysis`` or ``benchmarks`` (docs/ARCHITECTURE.md, tests/test_layers.py).
"""
