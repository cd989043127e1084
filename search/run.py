"""Run a hyperparameter search: ``python search/run.py --problem mmd_resnet``.

One DeepHyper search (CBO or random) over one problem (``problems``), each trial trained by
``training.loop.run_trial`` through :func:`search.runner.run_trial_job`. Outputs in the
log folder (see :mod:`search.logdir`); the best configurations are printed at the end.

Before the first trial, and before it writes anything: the log folder is locked (a second
driver on it exits 2: ``error: DIR is in use by PID ... on HOST (started ...)``), its files are
read strictly (a damaged ``results.csv`` or ``search.json`` is refused, never read as "no
trials"), a resumed search must keep its problem, fixed values, objective, stopper and data
(checked against ``search.json``), and ``--data`` is validated (``galaxies.datasets.
load_benchmark``: a bad file is one ``error:`` line, not a search of ``F_invalid_data`` rows).

Exit status: 0 done; 2 bad command line, unusable log folder or invalid data; 130 (SIGINT) or
143 (SIGTERM) interrupted: the driver kills its running trials, prints one line
(``interrupted by SIGINT: 5 trials done in DIR; continue with --resume``) and leaves a
resumable folder.

Resume (``--resume``): DeepHyper's ``checkpoint_restart`` reloads ``results.csv`` (every
completed trial, told again to the optimiser; none is re-run). ``--max-evals`` is the total,
so a search of 8 that died after 5 runs 3 more. A trial that was running when the driver died
and had checkpointed at least one epoch (``trials/<id>/resume.pt``) is run again first, under
its own job id, with its configuration, in its folder: it continues after its last completed
epoch (``training.loop.run_trial``), and counts towards ``--max-evals`` like any trial. Other
interrupted trials (killed during their first epoch) keep their folders, their ids are
skipped and fresh configurations replace them. A trial that finished (complete
``record.json``) but whose row was not written before the driver died is recovered: its row
is rebuilt from the record and it counts as completed; so is the trial of a partly written
last row.
"""

from __future__ import annotations

import os
import signal
import sys

from search.signals import EXIT_ON_SIGNAL


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """A signal before the driver took over (imports, argument checks): one line, 130/143.

    Nothing has been written yet: the log folder is locked only after the driver's own
    handlers (:class:`search.driver.InterruptHandler`) replace these.
    """
    name = signal.Signals(signum).name
    os.write(2, f"interrupted by {name} while starting: nothing was written\n".encode())
    os._exit(EXIT_ON_SIGNAL[signum])


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``search/run.py`` and ``galaxy-da-search``; returns the exit status."""
    previous = {signum: signal.signal(signum, _interrupted_while_starting)
                for signum in EXIT_ON_SIGNAL}
    try:
        from search.driver import main as driver_main

        return driver_main(argv)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
