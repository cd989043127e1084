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

It imports ``galaxies``, ``models``, ``training`` and ``search`` (model selection), never
``analysis`` or ``benchmarks`` (docs/ARCHITECTURE.md, tests/test_layers.py).
"""
