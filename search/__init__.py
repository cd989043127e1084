"""Hyperparameter search with DeepHyper: ``python search/run.py --problem mmd_resnet``.

Modules:

- :mod:`search.run`: the CLI (``main(argv=None)``): sets the early signal handlers, then
  hands over to :mod:`search.driver` (lock, checks, resume, the search, the summary).
- :mod:`search.cli`: argument parser, ``--set`` overrides, the runner flags.
- :mod:`search.runner`: the one trial runner: ``TrialContext``, the run function
  ``run_trial_job(job, context)``, the ``serial`` / ``process`` / ``ray`` evaluators (Ray
  pitfalls handled) and ``run_configurations`` (given configurations, e.g. seeds).
- :mod:`search.seeds`: CLI ``python search/seeds.py`` (seed robustness study).
- :mod:`search.objectives`: registry of objectives (maximised) computed from trial records.
- :mod:`search.algorithms`: CBO (``sampling`` acquisition optimiser) or random search, resumable.
- :mod:`search.deephyper_adapter`: every use of DeepHyper's private API.
- :mod:`search.logdir`: log folder layout, resume bookkeeping, ``search.json``.
- :mod:`search.summary`: ``summary.csv`` of the best configurations.
- :mod:`search.results`: search log folders and seed studies -> one tidy DataFrame (one row
  per trial, failed trials kept).
- :mod:`search.selection`: named model-selection strategies (which trial stands for a search).
- :mod:`search.selection_study`: the selection study: how well each objective picks models
  (Spearman against target accuracy, selection gap against the oracle's pick).
"""
