"""galaxy-da analysis: search and seed-study records -> pandas tables and matplotlib figures.

Analysis reads records and never trains. Only the opt-in diagnostics
(:mod:`analysis.diagnostics`, ``analysis/report.py --diagnostics``) apply trained models: they
load the selected trials' checkpoints and run them on the test images; nothing else reruns a
model.

Modules (the notebooks in ``analysis/notebooks`` only call these, and the search layer's
readers it re-exports: :mod:`search.results`, search log folders and seed studies -> one tidy
DataFrame, one row per trial; :mod:`search.selection`, the named model-selection strategies):
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

#: Public name -> the module that defines it; imported on first use (PEP 562), so that
#: ``import analysis.tables`` does not load torch, matplotlib or the inference code.
_EXPORTS = {
    'STRATEGIES': 'search.selection',
    'best_configs': 'analysis.tables',
    'diagnostic_models': 'analysis.diagnostics',
    'diagnostics_figures': 'analysis.diagnostics',
    'discover': 'search.results',
    'env_paths': 'search.results',
    'failed_trials': 'analysis.tables',
    'figure1': 'analysis.figures',
    'get_strategy': 'search.selection',
    'gradcam': 'analysis.diagnostics',
    'gradcam_figure': 'analysis.diagnostics',
    'gradcam_maps': 'analysis.diagnostics',
    'latent_figure': 'analysis.diagnostics',
    'latent_spaces': 'analysis.diagnostics',
    'load_roc': 'search.results',
    'load_runs': 'search.results',
    'load_search': 'search.results',
    'load_seed_study': 'search.results',
    'log_hyperparameters': 'search.results',
    'metrics_table': 'analysis.tables',
    'progress_figure': 'analysis.figures',
    'rank_trials': 'search.selection',
    'reliability': 'analysis.diagnostics',
    'reliability_figure': 'analysis.diagnostics',
    'save_figure': 'analysis.figures',
    'search_results': 'analysis.tables',
    'search_space_figure': 'analysis.figures',
    'searched_hyperparameters': 'search.results',
    'seed_stats': 'analysis.tables',
    'seed_summary': 'analysis.tables',
    'seeds_figure': 'analysis.figures',
    'selected_trials': 'search.selection',
    'table1': 'analysis.tables',
    'table1_values': 'analysis.tables',
    'to_markdown': 'analysis.tables',
    'trial_reliability': 'analysis.diagnostics',
}


def __getattr__(name: str):
    """Import the module holding ``name`` when it is first asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


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
