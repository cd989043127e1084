"""Numbers in the README come from the committed records under ``reports/``."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS_INDEX = REPO / "benchmarks/RESULTS.md"
RESULTS_PAGES = sorted((REPO / "benchmarks/results").glob("*.md"))


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    import re

    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(page: Path, level: str = "#+") -> list[str]:
    """The headings of a Markdown page (outside code blocks) at the given level pattern."""
    import re

    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    return re.findall(rf"^{level} (.+)$", text, flags=re.MULTILINE)


def results_section(page: str, heading: str) -> str:
    """The text of the ``## heading...`` section of ``benchmarks/results/<page>``: a figure
    checked against its records must stand in the section that reports it."""
    text = (REPO / "benchmarks/results" / page).read_text()
    start = text.index(f"\n## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_readme_is_a_map_and_every_link_resolves():
    """Issue 23: README under 200 lines; every relative link of README and docs/ exists; every
    Markdown page the README names is linked."""
    import re

    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), RESULTS_INDEX,
             *RESULTS_PAGES]
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"^(https?:|#|mailto:)", target):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(REPO)} links to a missing {target}"
            if "#" in target and path.suffix == ".md":
                assert target.split("#")[1] in map(anchor, headings(path)), \
                    f"{page.relative_to(REPO)} links to a missing heading {target}"
    for name in ("DATA", "METHODS", "SEARCH", "APPLY", "ARCHITECTURE", "CONTRACTS", "HISTORY",
                 "EXTENDING"):
        assert f"(docs/{name}.md)" in readme, name
    # a Markdown page the README names is a link, not a path to copy
    named = set(re.findall(r"(?<![\w./-])([\w./-]+\.md)\b", readme))
    assert len(named) >= 10
    linked = {target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", readme)}
    assert not named - linked, f"README names without linking: {sorted(named - linked)}"


def test_readme_quick_start_commands_parse():
    """Every command of the README's Quick start has valid flags (``sbatch`` lines aside)."""
    import shlex

    from analysis.report import build_parser as report_parser
    from apply.fit_ood import build_parser as fit_ood_parser
    from apply.predict import build_parser as predict_parser
    from apply.shift import build_parser as shift_parser
    from search.cli import build_parser as search_parser
    from search.seeds import build_parser as seeds_parser
    from search.status import build_parser as status_parser
    from training.train import build_parser as train_parser

    parsers = {"training/train.py": train_parser, "search/run.py": search_parser,
               "search/status.py": status_parser, "search/seeds.py": seeds_parser,
               "analysis/report.py": report_parser, "apply/predict.py": predict_parser,
               "apply/shift.py": shift_parser, "apply/fit_ood.py": fit_ood_parser}
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Quick start")[1].split("```bash\n")[1].split("```")[0]
    seen = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0] == "sbatch":
            continue
        assert words[0] == "python" and words[1] in parsers, f"no parser for: {line}"
        parsers[words[1]]().parse_args(words[2:])  # exits (fails the test) on a bad flag
        seen.append(words[1])
    assert len(seen) >= 6 and set(seen) <= set(parsers)


def test_results_index_links_every_page_and_section():
    """Issue 23: benchmarks/RESULTS.md is an index; it links every topic page and every
    ``##`` section of each, and the superseded generators live in docs/HISTORY.md."""
    index = RESULTS_INDEX.read_text()
    assert len(RESULTS_PAGES) >= 8
    assert len(index.splitlines()) < 60  # an index, not a notebook
    for page in RESULTS_PAGES:
        assert f"](results/{page.name})" in index, page.name
        slugs = [anchor(h) for h in headings(page)]
        assert len(slugs) == len(set(slugs)), f"{page.name} has two headings with one anchor"
        for heading in headings(page, "##"):
            assert f"](results/{page.name}#{anchor(heading)})" in index, (page.name, heading)
    history = headings(REPO / "docs/HISTORY.md")
    assert "Generator v2 (superseded)" in history
    assert "Generator v3 (superseded by v4, 2026-12-01)" in history
    for page in RESULTS_PAGES:
        assert "superseded" not in " ".join(headings(page)).lower(), page.name


def markdown_rows(text: str, header_start: str) -> dict[str, list[str]]:
    """The body rows of the Markdown table whose header starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_history_short_trial_table_equals_the_cpu_report():
    readme = markdown_rows((REPO / "docs/HISTORY.md").read_text(),
                           "| DeepMerge, short trials, test accuracy (%)")
    report = markdown_rows((REPO / "reports/cpu/table1.md").read_text(), "| method |")
    assert readme, "docs/HISTORY.md lost its short-trial table"
    for method, (source, target) in readme.items():
        assert report[method][:2] == [source, target], method


def test_apply_page_commands_parse():
    """Every predict/calibrate/fit_ood command of docs/APPLY.md has valid flags."""
    import shlex

    from apply.calibrate import build_parser as calibrate_parser
    from apply.fit_ood import build_parser as fit_ood_parser
    from apply.predict import build_parser as predict_parser
    from apply.shift import build_parser as shift_parser

    parsers = {"apply/predict.py": predict_parser(), "apply/calibrate.py": calibrate_parser(),
               "apply/fit_ood.py": fit_ood_parser(), "apply/shift.py": shift_parser()}
    section = (REPO / "docs/APPLY.md").read_text()
    seen = set()
    for line in section.splitlines():
        words = shlex.split(line.split("#")[0]) if line.startswith("python apply/") else []
        if words and words[1] in parsers:
            parsers[words[1]].parse_args(words[2:])  # exits (fails the test) on a bad flag
            seen.add(words[1])
    assert seen == set(parsers)


def test_apply_page_ood_rates_equal_the_records():
    """docs/APPLY.md's measured OOD flag rates are those of benchmarks/records/ood_check_*."""
    import json

    text = " ".join((REPO / "docs/APPLY.md").read_text().split())
    records = {name: json.loads((REPO / f"benchmarks/records/{name}.json").read_text())
               for name in ("ood_check_dev", "ood_check_dev_adabn")}
    no_da, adabn = (100 * records[n]["target_test"]["flagged"] for n in records)
    assert f"{no_da:.1f} % and {adabn:.1f} % of the target test images were flagged" in text
    for record in records.values():
        n = record["hubble_raw"]["n"]
        assert record["hubble_raw"]["flagged"] == record["hubble_noise_matched"]["flagged"] == 1
        assert f"100 % of the {n} Hubble stamps" in text
        assert f"{record['target_test']['n']} test target images" in text
    aucs = [records[n]["target_test"]["feature_shift"]["auc"] for n in records]
    ps = [records[n]["target_test"]["feature_shift"]["p_value"] for n in records]
    assert f"= {aucs[0]:.2f} and {aucs[1]:.2f} on those target test images" in text
    assert f"p = {ps[0]:.2g} and {ps[1]:.2g};" in text
    for record in records.values():
        for part in ("hubble_raw", "hubble_noise_matched"):
            assert f"{record[part]['feature_shift']['auc']:.2f} on the Hubble stamps" in text


def test_results_shift_cells_table_equals_the_record():
    """benchmarks/results/shift.md's cell statistics are reports/atlas/cells.json's."""
    import json

    from analysis.shift_atlas import cells_table

    cells = json.loads((REPO / "reports/atlas/cells.json").read_text())
    section = results_section("shift.md", "The shift atlas's cells and the shift meter")
    assert cells_table(cells) in section
    f160 = [cells["cells"][c]["target"]["size"][2] for c in ("sb25", "sb25-psf1.25",
                                                              "sb25-psf1.5")]
    assert "F160W " + " → ".join(f"{v:.2f}" for v in f160) in section
    f356 = [cells["cells"][c]["target"]["core"][1] for c in ("sb25", "sb25-psf1.25",
                                                             "sb25-psf1.5")]
    assert "F356W " + " → ".join(f"{v:.3f}" for v in f356) in section
    assert f"{100 * cells['cells']['sb23']['target']['size_ok'][0]:.0f} % in F814W" in section


def test_results_calibration_table_equals_the_committed_summary():
    import json

    from apply.calibrate import grouped_table

    trials = json.loads((REPO / "reports/headline/calibration.json").read_text())["trials"]
    table = grouped_table(trials)
    assert (REPO / "reports/headline/calibration.md").read_text() == table
    assert table in results_section("apply.md", "Applying models: calibration")


def test_results_selection_tables_equal_the_committed_study():
    import json

    from search.selection_study import format_summary

    study = json.loads((REPO / "benchmarks/records/selection_study.json").read_text())
    results = results_section("selection.md", "Label-free model selection")
    for role in ("choose", "confirm"):
        assert format_summary(study[role]["summary"]) in results, role
    assert study["choose"]["n_trials"] + study["confirm"]["n_trials"] >= 100
    assert study["choose"]["reference"] == "target_val_accuracy"  # no choice reads a test split
    from search.objectives import DEFAULT_OBJECTIVE

    assert study["choose"]["chosen"] == DEFAULT_OBJECTIVE


@pytest.mark.parametrize("folder", ["reports/methods_short", "reports/methods_full"])
def test_results_methods_table_equals_its_records(folder):
    from analysis import headline

    records = REPO / folder
    markdown = headline.format_markdown(headline.headline(records))
    assert (records / "headline.md").read_text() == markdown
    heading = ("Every method at its default configuration" if folder.endswith("full")
               else "Every method at a short budget")
    assert markdown in results_section("methods.md", heading)
    arms = headline.load_arms(records)
    names = {arm.name for arm in arms}
    assert {"none", "mmd", "dann", "coral", "mmdfe", "dannfe", "cdan", "sidda"} <= names
    assert all(len(arm.seeds) >= headline.MIN_TRAINING_SEEDS for arm in arms)
    if folder.endswith("full"):  # the default configuration: no budget override
        for arm in arms:
            for record in arm.records:
                config = record["config"]
                assert (config["epochs"], config["max_batches_per_epoch"]) == (30, 0), arm.name
                assert config["batch_size"] == 128, arm.name


def test_results_default_objective_on_the_methods_table():
    import json

    from scipy.stats import spearmanr

    from search.objectives import DEFAULT_OBJECTIVE, objective_value

    folder = REPO / "reports/methods_full/records"
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*/seed_*/record.json"))]
    assert len(records) == 27
    objective = [objective_value(DEFAULT_OBJECTIVE, r) for r in records]
    accuracy = [100 * r["metrics"]["target_test"]["accuracy"] for r in records]
    rho = spearmanr(objective, accuracy).statistic
    pick = accuracy[max(range(len(records)), key=objective.__getitem__)]
    results = results_section("methods.md", "Every method at its default configuration")
    assert f"`{DEFAULT_OBJECTIVE}`" in results
    assert f"Spearman ρ = +{rho:.2f} with the target test accuracy" in results
    assert f"Its top trial ({pick:.1f} %) is" in results
    best = max(accuracy)
    assert f"{best - pick:.1f} points below the best trial ({best:.1f} %)" in results


@pytest.mark.parametrize(("folder", "problems"), [
    ("reports/fast_path", {"none_deepmerge", "mmd_deepmerge", "dann_deepmerge"}),
    ("reports/fast_path_nostop", {"none_deepmerge"})])
def test_results_fast_path_table_equals_its_records(folder, problems):
    """The paired fp32-versus-auto comparisons (issue 22) in RESULTS are the committed ones."""
    import json

    folder = REPO / folder
    rows = json.loads((folder / "fast_path.json").read_text())
    table = (folder / "fast_path.md").read_text()
    assert table in results_section("speed.md", "The fast path per CPU")
    assert {row["problem"] for row in rows} == problems
    for row in rows:
        assert len(row["seeds"]) >= 3, row["problem"]
        for path in ("fp32", "auto"):
            for seed, acc_s, acc_t in zip(row["seeds"], row["paths"][path]["source_val_accuracy"],
                                          row["paths"][path]["target_val_accuracy"], strict=True):
                record = json.loads((folder / "records" / path / row["problem"] /
                                     f"seed_{seed}.json").read_text())
                assert record["metrics"]["source_val"]["accuracy"] == acc_s
                assert record["metrics"]["target_val"]["accuracy"] == acc_t
                assert record["config"]["precision"] == path
                assert (record["config"]["epochs"], record["config"]["max_batches_per_epoch"]
                        ) == (30, 0)  # full-length trials
                assert record["compute_path"]["asked"] == path and record["machine"]


def test_results_stopper_comparison_equals_its_record():
    """Successive halving over 30-epoch trials (issue 22): <= 1/4 of the epochs, same pick."""
    import json

    study = json.loads((REPO / "benchmarks/records/stopper30.json").read_text())
    full, sha = study["rows"]
    assert (full["stopper"], sha["stopper"]) == ("none", "sha")
    assert "epochs=30" in study["args"]["overrides"] and full["trials"] == sha["trials"] == 30
    assert sha["epochs"] <= full["epochs"] / 4
    assert abs(sha["pick_target_test_acc"] - full["pick_target_test_acc"]) <= 0.01
    results = results_section("speed.md", "The fast path per CPU")
    for row in (full, sha):
        assert (f"| {row['stopper']} | {row['trials']} | {row['ran_to_end']} | {row['stopped']} "
                f"| {row['epochs']} |") in results
        assert f"{100 * row['pick_target_test_acc']:.1f} %" in results


def test_results_stopping_study_is_rebuilt_from_its_records(tmp_path):
    """Issue 25: the stopping-rule table in RESULTS is what the committed traces give, the
    chosen rule is the trainer's default, and the study ran on development data only."""
    import json
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    import stopping_study

    from analysis.headline import DEVELOPMENT_DATA_SEEDS
    from training.config import default_config

    result = stopping_study.table(REPO / "reports/stopping/records", tmp_path)
    rebuilt = (tmp_path / "stopping.md").read_text()
    assert rebuilt == (REPO / "reports/stopping/stopping.md").read_text()
    assert rebuilt.strip() in results_section("stopping-and-searches.md", "A fair stopping rule")
    assert stopping_study.CONFIG_VALUE[result["choice"]["rule"]] == default_config().stopping
    for problem, entry in result["problems"].items():
        assert entry["seeds"] == [1, 2, 3], problem
        assert set(entry["data_seeds"]) <= set(DEVELOPMENT_DATA_SEEDS), problem
    for path in (REPO / "reports/stopping/records").glob("*/seed_*.json"):
        study = json.loads(path.read_text())
        assert study["compute_path"] and study["machine"], path
        assert len(study["trace"]) == study["config"]["epochs"] == 30, path


def test_results_first_hour_table_equals_its_record():
    """Issue 27: the wall times quoted in RESULTS are those of the committed record, and the
    budget they were measured with is today's laptop budget."""
    import json

    from search.cli import BUDGETS

    record = json.loads((REPO / "benchmarks/records/first_hour_zen4.json").read_text())
    results = results_section("stopping-and-searches.md", "The first hour")
    for run in record["runs"]:
        minutes, seconds = divmod(round(run["wall_s"]), 60)
        assert f"{minutes} min {seconds:02d} s" in results, run
        assert f"| {round(run['search_s'])} s |" in results, run
    current = [r for r in record["runs"] if r["budget"]["max_images_per_epoch"]
               == BUDGETS["laptop"]["max_images_per_epoch"]]
    assert {r["command"] for r in current} == {"make search",
                                                "python search/run.py --problem mmd_resnet"}
    assert all(r["budget"]["epochs"] == BUDGETS["laptop"]["epochs"] for r in current)
    assert max(r["wall_s"] for r in current if r["command"] == "make search") <= 8 * 60
    assert max(r["wall_s"] for r in current if "mmd_resnet" in r["command"]) <= 10 * 60


def test_results_step_rates_and_end_to_end_trial_equal_their_records():
    """Issue 22: the step-rate table and the end-to-end figures in RESULTS are the records'."""
    import json
    import re

    results = results_section("speed.md", "The fast path per CPU")
    text = (REPO / "benchmarks/records/step_auto_zen4.txt").read_text()
    blocks = re.findall(r"^(\w+) \(batch (\d+)[^)]*\)\n\s+fp32\s+([\d.]+) ms/step.*\n"
                        r"\s+auto\s+([\d.]+) ms/step.*x([\d.]+)", text, flags=re.MULTILINE)
    assert len(blocks) == 5
    section = results[results.index("### Step rates and a full trial end to end"):]
    section = section[:section.index("\n### ", 1)]
    for problem, _batch, fp32, auto, speedup in blocks:
        row = next(line for line in section.splitlines() if line.startswith(f"| `{problem}` ("))
        assert f"| {fp32} ms | {auto} ms | **x{speedup}** |" in row, row
    trials = json.loads((REPO / "benchmarks/records/trial_e2e_zen4.json").read_text())["trials"]
    two_threads, seed1, seed2 = trials
    assert f"**{two_threads['wall_s']:.0f} s ({two_threads['wall_s'] / 60:.1f} min)**" in results
    assert f"{seed1['wall_s']:.0f} s (seed 1" in results and f"{seed2['wall_s']:.0f} s (seed 2" \
        in results
    assert (f"{100 * two_threads['source_val_accuracy']:.1f} / "
            f"{100 * two_threads['target_val_accuracy']:.1f} %") in results


def test_results_searches_table_equals_the_committed_searches():
    """Issue 25: the table of the searches on development data is what their records give;
    every search ran on a development data seed, with the paper budget and the default rule."""
    import json

    from analysis.headline import DEVELOPMENT_DATA_SEEDS
    from analysis.paper_study import searches_table

    table = searches_table(REPO / "reports/paper")
    assert table.strip() in results_section("stopping-and-searches.md",
                                             "The searches on development data")
    for search in (REPO / "reports/paper/searches").glob("*/search.json"):
        meta = json.loads(search.read_text())
        assert meta["budget"]["name"] == "paper" and meta["stopper"] == "sha", search
        assert meta["data"]["source"]["attrs"]["seed"] in DEVELOPMENT_DATA_SEEDS, search
        for record in (search.parent / "trials").glob("*/record.json"):
            config = json.loads(record.read_text())["config"]
            assert config["stopping"] == "best" and config["epochs"] == 30, record


def test_results_shift_seeing_statistic_table_equals_the_record():
    """benchmarks/results/shift.md's seeing readings per class are the development record's."""
    import json

    record = json.loads((REPO / "benchmarks/records/seeing_statistic_dev.json").read_text())
    section = results_section("shift.md", "The shift atlas's cells and the shift meter")
    assert record["data_seed"] == 2  # development data: this chose a statistic

    def cell(row):
        read = f"{row['psf_scale']:.2f}"
        if row["outside"]:
            return f"**{read}** (outside)"
        if row["cell"] == (f"sb25-psf{psf:g}" if psf != 1.0 else "sb25"):
            return read
        named = row["cell"].split("psf")[-1] if "psf" in row["cell"] else "1"
        return f"**{read}** (cell × {named})"

    for psf in (1.0, 1.25, 1.5):
        rows = {r["set"]: r for r in record["rows"] if r["psf_scale"] == psf}
        line = f"| {psf:g} | " + " | ".join(
            " / ".join(cell(rows[name][statistic]) for name in ("mixed", "mergers", "non-mergers"))
            for statistic in ("adaptive", "core")) + " |"
        assert line in section, line
