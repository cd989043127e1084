"""Hyperparameter search with DeepHyper: ``python search/run.py --problem mmd_resnet``.

Modules:

- :mod:`search.run`: the CLI driver (``main(argv=None)``).
- :mod:`search.cli`: argument parser and ``--set`` overrides.
- :mod:`search.run_function`: ``run_trial_job(job, context)``, the importable run function.
- :mod:`search.objectives`: registry of objectives (maximised) computed from trial records.
- :mod:`search.evaluators`: ``serial`` / ``process`` / ``ray`` evaluators (Ray pitfalls handled).
- :mod:`search.algorithms`: CBO (``sampling`` acquisition optimiser) or random search, resumable.
- :mod:`search.logdir`: log folder layout, resume bookkeeping, ``search.json``.
- :mod:`search.summary`: ``summary.csv`` of the best configurations.
- :mod:`search.objective_study`: Spearman of each objective against target test accuracy.
"""
