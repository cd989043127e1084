"""galaxy-da analysis: search and seed-study records -> pandas tables and matplotlib figures.

Analysis reads records and never trains. Only the opt-in diagnostics
(:mod:`analysis.diagnostics`, ``analysis/report.py --diagnostics``) apply trained models: they
load the selected trials' checkpoints and run them on the test images; nothing else reruns a
model.

Modules (the notebooks in ``analysis/notebooks`` only call these):

- :mod:`analysis.load`: search log folders and seed studies -> one tidy DataFrame, one row
  per trial (failed trials kept, ``status == "failed"``).
- :mod:`analysis.selection`: named model-selection strategies (default: the search's own
  objective).
- :mod:`analysis.tables`: Table 1, all metrics, best configurations, seed statistics, Markdown.
- :mod:`analysis.figures`: Figure 1 (metric bars + ROC), search progress, search space, seeds.
- :mod:`analysis.diagnostics`: latent spaces (Isomap, t-SNE), Grad-CAM maps and reliability
  diagrams of the selected trained models.
- :mod:`analysis.report`: CLI ``python analysis/report.py --runs DIR... --out DIR``.
- :mod:`analysis.compare`: CLI ``python analysis/compare.py A B`` (paired comparison).
- :mod:`analysis.reproduce`: CLI ``python analysis/reproduce.py --profile cpu|full|tiny``.

Example::

    from analysis import load_runs, table1
    frame = load_runs("runs")
    table1(frame)
"""

from analysis.diagnostics import (
    diagnostic_models,
    diagnostics_figures,
    gradcam,
    gradcam_figure,
    gradcam_maps,
    latent_figure,
    latent_spaces,
    reliability,
    reliability_figure,
    trial_reliability,
)
from analysis.figures import (
    figure1,
    progress_figure,
    save_figure,
    search_space_figure,
    seeds_figure,
)
from analysis.load import (
    discover,
    env_paths,
    load_roc,
    load_runs,
    load_search,
    load_seed_study,
    log_hyperparameters,
    searched_hyperparameters,
)
from analysis.selection import STRATEGIES, get_strategy, rank_trials, selected_trials
from analysis.tables import (
    best_configs,
    failed_trials,
    metrics_table,
    search_results,
    seed_stats,
    seed_summary,
    table1,
    table1_values,
    to_markdown,
)

__all__ = [
    "STRATEGIES", "best_configs", "diagnostic_models", "diagnostics_figures", "discover",
    "env_paths", "failed_trials", "figure1", "get_strategy", "gradcam", "gradcam_figure",
    "gradcam_maps", "latent_figure", "latent_spaces", "reliability", "reliability_figure",
    "trial_reliability",
    "load_roc", "load_runs", "load_search", "load_seed_study", "log_hyperparameters",
    "metrics_table", "progress_figure", "rank_trials", "save_figure", "search_results",
    "search_space_figure", "searched_hyperparameters", "seed_stats", "seed_summary",
    "seeds_figure", "selected_trials", "table1", "table1_values", "to_markdown",
]
