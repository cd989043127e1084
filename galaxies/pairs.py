"""Write a source/target pair as one transaction, and the pair id that ties the two files.

The simulator and the importer never write into the destination folder directly::

    pair_id = compute_pair_id({"source": source, "target": target})
    with pair_transaction(out_dir, pair_id) as pair:
        pair.write("source", source)     # each file is validated as soon as it is written
        pair.write("target", target)
    # here both files are in out_dir, validated as a pair

1. Both files are written (each atomically, see ``galaxies.schema.write_domain``) into a
   temporary folder on the destination's file system: ``DIR/.pair-tmp-XXXX/`` when ``DIR``
   exists, else ``.DIR.pair-tmp-XXXX/`` beside it. Each carries the attribute ``pair_id``.
2. Each is validated (``galaxies.validate.validate_file``) right after it is written, and the
   two together (``check_pair``) before anything is replaced.
3. Commit: a new ``DIR`` is the temporary folder renamed (one atomic ``rename``); an existing
   ``DIR`` gets ``source.h5`` then ``target.h5`` renamed over the old ones (each atomic).

Any failure before the commit (bad input, a file that fails validation, an exception, a full
disk, Ctrl-C) removes the temporary folder and every folder the transaction created: the old
pair stays byte-identical and no empty output folder remains.

The window POSIX leaves: between the two renames of step 3 (microseconds, no data written),
a reader or a crash can meet the new source beside the old target. The pair id makes that
visible instead of silent: validation and loading refuse two files whose ids differ (or where
only one has an id); rerunning the command repairs it. A writer killed with SIGKILL before
the commit leaves its ``.pair-tmp-*`` folder (never the destination files), which can be
deleted.

The pair id is a content hash, not a random id, so that the same command writes the same
bytes (the simulator is deterministic): SHA-256 over both domains' attributes (generator,
version, seed, counts, noise, input checksums and time of an import, ...) and their
``galaxy_id``, ``labels`` and ``split`` arrays. Two runs that differ in anything that
shapes the data (seed, counts, limiting surface brightness, inputs) get different ids.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from galaxies.atomic import fsync_dir, is_write_error, with_destination
from galaxies.schema import (
    DATASET_DTYPES,
    DOMAINS,
    PAIR_ID_ATTR,
    DomainData,
    domain_paths,
    read_attrs,
    write_domain,
)
from galaxies.validate import InvalidDatasetError, check_pair, validate_file

TMP_PREFIX = ".pair-tmp-"
LAYOUT_ARRAYS = ("galaxy_id", "labels", "split")


def compute_pair_id(domains: Mapping[str, DomainData]) -> str:
    """The pair id of two domains: a hash of their attributes and layout arrays.

    Args:
        domains: ``{"source": DomainData, "target": DomainData}``; ``images`` are not read
            (they follow from the attributes: seed and generator, or the inputs' checksums).

    Returns:
        32 hex digits.
    """
    digest = hashlib.sha256(b"galaxy-da pair v1")
    for domain in DOMAINS:
        data = domains[domain]
        attrs = {k: v for k, v in data.attrs.items() if k != PAIR_ID_ATTR}
        digest.update(json.dumps(attrs, sort_keys=True, default=str).encode())
        for name in LAYOUT_ARRAYS:
            array = np.ascontiguousarray(getattr(data, name), dtype=DATASET_DTYPES[name])
            digest.update(str(array.shape).encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:32]


class PairTransaction:
    """The open transaction of :func:`pair_transaction`; call :meth:`write` once per domain.

    Attributes:
        pair_id: written into both files.
        paths: the final ``{"source": path, "target": path}``.
        staging: the temporary folder.
    """

    def __init__(self, out_dir: Path, staging: Path, pair_id: str) -> None:
        self.pair_id = pair_id
        self.paths = domain_paths(out_dir)
        self.staging = staging
        self._written: dict[str, tuple[dict, tuple[int, ...]]] = {}

    def write(self, domain: str, data: DomainData) -> None:
        """Write one domain into the temporary folder (with the pair id) and validate it.

        Raises:
            InvalidDatasetError: the written file fails validation (named by its final path).
            OSError: it cannot be written (named by its final path).
        """
        if domain not in DOMAINS or domain in self._written:
            raise ValueError(f"write each of {DOMAINS} once, got {domain!r} again or unknown")
        final = self.paths[domain]
        staged = domain_paths(self.staging)[domain]
        data = DomainData(data.images, data.labels, data.galaxy_id, data.split,
                          {**data.attrs, PAIR_ID_ATTR: self.pair_id})
        try:
            write_domain(staged, data)
            checked = validate_file(staged)
        except InvalidDatasetError as err:
            raise InvalidDatasetError(final, err.problem, err.fix) from None
        except OSError as err:
            if is_write_error(err):
                raise with_destination(err, final) from None
            raise
        self._written[domain] = (checked.attrs, checked.images.shape[1:])

    def check(self) -> None:
        """Both domains written and consistent as a pair (raises ``InvalidDatasetError``)."""
        missing = [d for d in DOMAINS if d not in self._written]
        if missing:
            raise ValueError(f"pair transaction ended without writing {missing}")
        check_pair(self.paths, {d: w[0] for d, w in self._written.items()},
                   {d: w[1] for d, w in self._written.items()})


def _missing_ancestors(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


@contextmanager
def pair_transaction(out_dir: str | os.PathLike, pair_id: str) -> Iterator[PairTransaction]:
    """Write a pair into ``out_dir`` all or nothing (see the module docstring).

    Raises:
        InvalidDatasetError: a written file, or the pair, fails validation (nothing replaced).
        OSError: ``out_dir`` cannot be written (disk full, permissions), naming the file.
    """
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out_dir))
    existed = out_dir.is_dir()
    finals = {str(path) for path in domain_paths(out_dir).values()}
    created = [] if existed else _missing_ancestors(out_dir.parent)
    try:
        for folder in reversed(created):
            folder.mkdir()
        if existed:
            staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out_dir))
        else:
            staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{TMP_PREFIX}",
                                            dir=out_dir.parent))
    except OSError as err:
        _remove_created(created)
        raise with_destination(err, out_dir) from None
    try:
        transaction = PairTransaction(out_dir, staging, pair_id)
        yield transaction
        transaction.check()
        staged = domain_paths(staging)
        if existed:
            for domain in DOMAINS:  # the window: new source beside the old target
                os.replace(staged[domain], transaction.paths[domain])
            fsync_dir(out_dir)
            staging.rmdir()
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 -> a folder as mkdir makes it
            os.rename(staging, out_dir)
            fsync_dir(out_dir.parent)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_created(created)
        if is_write_error(err) and str(err.filename) not in finals:
            raise with_destination(err, out_dir) from None
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_created(created)
        raise


def _remove_created(created: list[Path]) -> None:
    """Remove the folders a failed transaction created (deepest first, only if empty)."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return


def refuse_existing_pair(out_dir: str | os.PathLike, force: bool) -> str | None:
    """The one-line refusal when ``out_dir`` already holds a pair and ``force`` is not given.

    ``simulate.py`` and ``import_real.py`` replace an existing ``source.h5``/``target.h5`` only
    with ``--force`` (the other commands refuse a non-empty output the same way).
    """
    existing = [name for name in ("source.h5", "target.h5") if (Path(out_dir) / name).exists()]
    if existing and not force:
        return (f"--out {out_dir} already holds {' and '.join(existing)}. Fix: pass another "
                "folder, or --force to replace that pair")
    return None


def data_identity(data_dir: str | os.PathLike) -> dict[str, Any]:
    """What makes two data folders the same data: per domain, its size and HDF5 attributes.

    ``{domain: {"bytes", "rows", "attrs"} | None}`` (``None``: the file cannot be read); it
    holds the ``pair_id`` when the files have one. Stored in ``search.json``, ``seeds.json``,
    every trial record (``data.identity``) and ``resume.pt``; :func:`same_data` compares two.

    A moved or copied folder keeps its identity; a re-simulated one with another seed or
    generator, or another data set, does not.
    """
    identity: dict[str, Any] = {}
    for domain, path in domain_paths(data_dir).items():
        try:
            with h5py.File(path, "r") as h5:
                attrs = read_attrs(h5)
                rows = int(h5["labels"].shape[0]) if "labels" in h5 else None
        except OSError:
            identity[domain] = None
            continue
        identity[domain] = {"bytes": path.stat().st_size, "rows": rows,
                            "attrs": json.loads(json.dumps(attrs, default=str))}
    return identity


#: The fields of a domain's identity :func:`same_data` compares, in the order it reports them.
IDENTITY_FIELDS = ("rows", "attrs", "bytes")


def same_data(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> str | None:
    """The one "same data?" check: ``None`` when identities ``a`` and ``b`` agree, else one line.

    Used by search resume, both seed studies (``search/seeds.py`` and the classical
    baseline's), trial resume (``resume.pt``), ``train.py --from-trial``,
    ``apply/calibrate.py`` and ``apply/fit_ood.py``. The line says what differs, ``a``'s value
    first, e.g. ``source: attribute seed 1 vs 2; target: attribute seed 1 vs 2``.

    Per domain it compares the fields of :data:`IDENTITY_FIELDS` that *both* identities hold
    (after the JSON round trip a record makes; non-finite floats count as ``null``), so a
    partial identity is compared on what it knows: a record written before records carried
    ``data.identity`` gives its attributes only (``training.record.recorded_identity``), and
    the check falls back to comparing attributes. An identity that is ``None`` (or has no
    domain at all) is unknown and agrees with anything; a domain that is ``None`` on one side
    only (its file could not be read) differs.
    """
    if not a or not b:
        return None
    reasons = []
    for domain in DOMAINS:
        if domain not in a or domain not in b:
            continue
        mine, theirs = a[domain], b[domain]
        if (mine is None) != (theirs is None):
            side = "first" if mine is None else "second"
            reasons.append(f"{domain}: no readable {domain}.h5 in the {side}")
            continue
        if mine is None:
            continue
        found = []
        for field in IDENTITY_FIELDS:
            if field not in mine or field not in theirs:
                continue
            left, right = _canonical(mine[field]), _canonical(theirs[field])
            if left == right:
                continue
            if field == "attrs" and isinstance(left, dict) and isinstance(right, dict):
                found.append(_attrs_difference(left, right))
            elif field != "bytes" or not found:  # the size only when nothing else says why
                found.append(f"{field} {_short(left)} vs {_short(right)}")
        if found:
            reasons.append(f"{domain}: " + ", ".join(found))
    return "; ".join(reasons) or None


def _attrs_difference(left: dict[str, Any], right: dict[str, Any], most: int = 3) -> str:
    """The attributes that differ (the pair id last: it follows from the others)."""
    keys = sorted((k for k in set(left) | set(right) if left.get(k) != right.get(k)),
                  key=lambda k: (k == PAIR_ID_ATTR, k))
    missing = object()
    parts = [f"attribute {k} {_short(left.get(k, missing))} vs {_short(right.get(k, missing))}"
             for k in keys[:most]]
    more = f" (+{len(keys) - most} more)" if len(keys) > most else ""
    return ", ".join(parts) + more


def _short(value: Any, width: int = 24) -> str:
    """``value`` in a few characters (``-`` for a missing attribute)."""
    if not isinstance(value, (str, int, float, bool, list, dict, type(None))):
        return "-"
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 3] + "..."


def _canonical(value: Any) -> Any:
    """``value`` as a JSON record holds it: non-finite floats ``None``, tuples lists."""
    def finite(item: Any) -> Any:
        if isinstance(item, float) and not np.isfinite(item):
            return None
        if isinstance(item, dict):
            return {str(k): finite(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [finite(v) for v in item]
        return item

    return json.loads(json.dumps(finite(value), default=str))
