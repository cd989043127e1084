"""Exit statuses of a search stopped by a signal, shared by the launcher and the driver.

Deliberately free of heavy imports: :mod:`search.run` reads it before anything else loads.
"""

from __future__ import annotations

import signal

#: 128 + the signal number, as a shell reports a process a signal ended.
EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
