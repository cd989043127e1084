"""Issue 15, data safety: transactional pair writers, pair ids, disk-full and read-only
folders, the loader's value checks, and the ``--set`` / import messages (findings 1, 2, 3, 6,
10). Each test first reproduces the finding as reported, then checks the fix.

Read-only folders: the tests run as root here, and root ignores permission bits, so a
``chmod`` variant is skipped for root; a read-only tmpfs (``mount -o ro``, refused to root
too) and a monkeypatched ``PermissionError`` cover it instead. Disk full: a tiny tmpfs where
mounting is allowed (root), and ``OSError(ENOSPC)`` from the lowest write call everywhere.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from fs_helpers import tmpfs

from galaxies import import_real, schema
from galaxies import validate as validate_module
from galaxies.datasets import domain_stats, load_benchmark
from galaxies.pairs import compute_pair_id, pair_transaction
from galaxies.schema import PAIR_ID_ATTR, SPLITS, domain_paths, write_domain
from galaxies.simulate import simulate
from galaxies.validate import InvalidDatasetError, validate_file, validate_pair

REPO = Path(__file__).resolve().parents[1]
SMALL = (11, 3)  # the smallest valid simulation: 14 rows, ~1 MB per file
FAST = ["--set", "epochs=1", "--set", "max_batches_per_epoch=2", "--set", "batch_size=8"]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]




def _fill(path: Path, leave: int) -> None:
    """Fill the file system of ``path`` with one file, then free ``leave`` bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            try:
                if os.write(fd, b"\0" * (1 << 16)) == 0:
                    break
            except OSError:
                break
    finally:
        os.close(fd)
    os.truncate(path, max(0, path.stat().st_size - leave))


class _FullDisk:
    """A file whose ``write`` fails with ENOSPC after ``room`` bytes (the lowest write call)."""

    def __init__(self, handle, room: int) -> None:
        self._handle, self._room = handle, room

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self._room:
            self._handle.write(memoryview(data)[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= size
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


def _disk_fills_after(monkeypatch, room: int) -> None:
    """Make every HDF5 file ``write_domain`` opens fail with ENOSPC after ``room`` bytes."""
    real_open = open

    def full_open(path, mode="r", *args, **kwargs):
        return _FullDisk(real_open(path, mode, *args, **kwargs), room)

    monkeypatch.setattr(schema, "open", full_open, raising=False)


# --- import inputs --------------------------------------------------------------------------

def _npy_inputs(folder: Path, n_source: int = 24, n_target: int = 24, seed: int = 0,
                target_labels=None) -> list[str]:
    rng = np.random.default_rng(seed)
    args = []
    for domain, n in (("source", n_source), ("target", n_target)):
        images = rng.normal(size=(n, 3, 75, 75)).astype(np.float32)
        labels = np.tile([0.0, 1.0], n // 2 + 1)[:n]
        if domain == "target" and target_labels is not None:
            labels = target_labels
        np.save(folder / f"{domain}_x.npy", images)
        np.save(folder / f"{domain}_y.npy", labels)
        args += [f"--{domain}-images", str(folder / f"{domain}_x.npy"),
                 f"--{domain}-labels", str(folder / f"{domain}_y.npy")]
    return args


# --- finding 1: a failed import deleted the existing pair ----------------------------------

def test_failed_import_keeps_the_old_pair_byte_identical(tmp_path, capsys):
    out = tmp_path / "data"
    assert import_real.main([*_npy_inputs(tmp_path), "--out", str(out)]) == 0
    before = _digests(out)
    capsys.readouterr()
    # the reported case: a 3-row target ("split val has no rows")
    bad = _npy_inputs(tmp_path, n_target=3, seed=1, target_labels=np.array([0.0, 1.0, 0.0]))
    assert import_real.main([*bad, "--out", str(out), "--force"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {out / 'target.h5'}: ") and "has no rows" in line, line
    assert _digests(out) == before  # both old files still there, byte-identical
    assert _entries(out) == ["source.h5", "target.h5"]  # no temporary folder left
    validate_pair(out)


def test_failed_import_into_a_new_folder_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "data"
    bad = _npy_inputs(tmp_path, n_target=3, target_labels=np.array([0.0, 1.0, 0.0]))
    assert import_real.main([*bad, "--out", str(out), "--force"]) == 1
    assert "has no rows" in _one_line(capsys.readouterr().err)
    assert _entries(tmp_path) == sorted(p.name for p in tmp_path.glob("*.npy"))


def test_import_disk_full_keeps_the_old_pair(tmp_path, capsys, monkeypatch):
    out = tmp_path / "data"
    assert import_real.main([*_npy_inputs(tmp_path), "--out", str(out)]) == 0
    before = _digests(out)
    capsys.readouterr()
    _disk_fills_after(monkeypatch, room=200_000)
    assert import_real.main([*_npy_inputs(tmp_path, seed=3), "--out", str(out), "--force"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line == f"error: cannot write {out / 'source.h5'}: No space left on device", line
    assert _digests(out) == before and _entries(out) == ["source.h5", "target.h5"]


def test_simulation_interrupted_between_its_two_files_keeps_the_old_pair(tmp_path,
                                                                        monkeypatch):
    """The reported case: re-simulating seed 5 -> 7 over a folder, killed after the source."""
    out = tmp_path / "data"
    simulate(out, *SMALL, seed=5, workers=1, progress=False)
    before = _digests(out)
    import galaxies.pairs as pairs

    real_write = pairs.write_domain

    def write_then_die(path, data):
        real_write(path, data)
        if data.attrs["domain"] == "source":
            raise KeyboardInterrupt  # the kill between the two writes

    monkeypatch.setattr(pairs, "write_domain", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        simulate(out, *SMALL, seed=7, workers=1, progress=False)
    assert _digests(out) == before and _entries(out) == ["source.h5", "target.h5"]
    assert validate_pair(out)["source"].attrs["seed"] == 5


# --- finding 2: a mismatched pair passed ---------------------------------------------------

def test_source_of_seed_7_beside_target_of_seed_5_is_refused(tmp_path, capsys):
    five, seven = tmp_path / "five", tmp_path / "seven"
    simulate(five, *SMALL, seed=5, workers=1, progress=False)
    simulate(seven, *SMALL, seed=7, workers=1, progress=False)
    ids = {validate_file(p).attrs[PAIR_ID_ATTR] for p in domain_paths(five).values()}
    assert len(ids) == 1  # both files of one simulation share the id
    shutil.copy2(seven / "source.h5", five / "source.h5")  # the state a kill left
    for path in domain_paths(five).values():
        validate_file(path)  # each file alone is valid ...
    with pytest.raises(InvalidDatasetError) as info:  # ... the pair is not
        validate_pair(five)
    message = str(info.value)
    assert "\n" not in message and "pair_id" in message and "seed 7" in message
    assert "seed 5" in message and "re-simulate or re-import both files together" in message
    with pytest.raises(InvalidDatasetError, match="not written together"):
        load_benchmark(five)
    capsys.readouterr()
    assert validate_module.main([str(five)]) == 1
    assert "INVALID pair" in capsys.readouterr().err
    assert validate_module.main([str(five / "source.h5"), str(five / "target.h5")]) == 1
    assert validate_module.main([str(seven)]) == 0
    assert "OK pair" in capsys.readouterr().out


def test_train_refuses_a_mismatched_pair(tmp_path, tiny_domain_pair, capsys):
    from training.train import main

    data = tmp_path / "data"
    shutil.copytree(tiny_domain_pair, data)
    with h5py.File(data / "source.h5", "r+") as h5:  # one file written by a newer writer
        h5.attrs[PAIR_ID_ATTR] = "0" * 32
    code = main(["--problem", "none_deepmerge", "--data", str(data), "--out",
                 str(tmp_path / "trial"), "--quiet", *FAST])
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert "has pair_id" in line and "has none" in line and "Fix: re-simulate" in line
    assert not (tmp_path / "trial" / "record.json").exists()


def test_pair_id_is_deterministic_and_follows_the_content(tmp_path):
    a = simulate(tmp_path / "a", *SMALL, seed=5, workers=1, progress=False)
    b = simulate(tmp_path / "b", *SMALL, seed=5, workers=1, progress=False)
    c = simulate(tmp_path / "c", *SMALL, seed=5, workers=1, progress=False, limiting_sb=27)
    ids = [validate_file(paths["target"]).attrs[PAIR_ID_ATTR] for paths in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]  # same command, same bytes; other noise, other pair
    assert (tmp_path / "a/source.h5").read_bytes() == (tmp_path / "b/source.h5").read_bytes()
    # the source of c is the same galaxies, but c's source beside a's target is refused
    shutil.copy2(tmp_path / "c/source.h5", tmp_path / "a/source.h5")
    with pytest.raises(InvalidDatasetError, match="differs from the source's"):
        validate_pair(tmp_path / "a")


def test_files_without_pair_ids_still_load(tiny_domain_pair):
    """Files written before pair ids (and the fixtures, via write_domain) pass as before."""
    for path in domain_paths(tiny_domain_pair).values():
        with h5py.File(path, "r") as h5:
            assert PAIR_ID_ATTR not in h5.attrs
    bench = load_benchmark(tiny_domain_pair)
    assert len(bench.source) == len(bench.target) == 40


def test_pair_transaction_needs_both_files(tmp_path, tiny_domain_arrays):
    pair_id = compute_pair_id(tiny_domain_arrays)
    with pytest.raises(ValueError, match="without writing"), \
            pair_transaction(tmp_path / "out", pair_id) as pair:
        pair.write("source", tiny_domain_arrays["source"])
    assert _entries(tmp_path) == []
    with pair_transaction(tmp_path / "out", pair_id) as pair:
        for domain, data in tiny_domain_arrays.items():
            pair.write(domain, data)
    assert _entries(tmp_path / "out") == ["source.h5", "target.h5"]
    assert validate_pair(tmp_path / "out")["target"].attrs[PAIR_ID_ATTR] == pair_id


# --- finding 3: disk full and read-only folders --------------------------------------------

def _simulate_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "galaxies/simulate.py", "--workers", "1", "--quiet",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_simulate_on_a_full_disk_is_one_line_and_keeps_the_old_pair(tmp_path):
    """The reported case crashed (exit 139 after 9 tracebacks from HDF5's close)."""
    with tmpfs(tmp_path / "disk", size="3m") as disk:
        out = disk / "bench"
        done = _simulate_cli("--out", str(out), "--n-mergers", "11", "--n-nonmergers", "3")
        assert done.returncode == 0, done.stderr
        before = _digests(out)
        done = _simulate_cli("--out", str(out), "--n-mergers", "40", "--n-nonmergers", "30",
                             "--force")
        assert done.returncode == 1
        line = _one_line(done.stderr)
        assert line.startswith("error: cannot write ") and "No space left on device" in line
        assert _digests(out) == before and _entries(out) == ["source.h5", "target.h5"]
        assert _entries(disk) == ["bench"]
        done = _simulate_cli("--out", str(disk / "new"), "--n-mergers", "40",
                             "--n-nonmergers", "30")
        assert done.returncode == 1 and "No space left" in _one_line(done.stderr)
        assert _entries(disk) == ["bench"]  # no empty folder, no temporary folder


def test_simulate_enospc_from_the_lowest_write(tmp_path, capsys, monkeypatch):
    from galaxies.simulate import main

    out = tmp_path / "bench"
    simulate(out, *SMALL, seed=1, workers=1, progress=False)
    before = _digests(out)
    _disk_fills_after(monkeypatch, room=300_000)
    assert main(["--out", str(out), "--n-mergers", "15", "--n-nonmergers", "3", "--seed", "2",
                 "--workers", "1", "--quiet", "--force"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line == f"error: cannot write {out / 'source.h5'}: No space left on device"
    assert _digests(out) == before and _entries(out) == ["source.h5", "target.h5"]


def _train(tiny, out, capsys):
    from training.train import main

    code = main(["--problem", "none_deepmerge", "--data", str(tiny), "--out", str(out),
                 "--quiet", *FAST])
    return code, capsys.readouterr().err


def test_train_into_a_read_only_filesystem(tmp_path, tiny_domain_pair, capsys):
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        code, err = _train(tiny_domain_pair, ro / "trial", capsys)
    assert code == 2
    assert _one_line(err) == f"error: cannot write {ro / 'trial'}: Read-only file system"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_train_into_a_read_only_folder_chmod(tmp_path, tiny_domain_pair, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, err = _train(tiny_domain_pair, folder / "trial", capsys)
    finally:
        folder.chmod(0o755)
    assert code == 2 and "Permission denied" in _one_line(err)


def test_train_permission_error_monkeypatched(tmp_path, tiny_domain_pair, capsys,
                                              monkeypatch):
    import galaxies.atomic as atomic

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    code, err = _train(tiny_domain_pair, tmp_path / "trial", capsys)
    assert code == 2
    assert _one_line(err) == f"error: cannot write {tmp_path / 'trial'}: Permission denied"
    assert not (tmp_path / "trial").exists()


def test_train_disk_full_during_the_trial(tmp_path, tiny_domain_pair, capsys, monkeypatch):
    """ENOSPC while the checkpoint, then the record, are written: one line, nothing truncated."""
    import galaxies.atomic as atomic

    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "fsync_path", full)
    out = tmp_path / "trial"
    code, err = _train(tiny_domain_pair, out, capsys)
    assert code == 2
    line = _one_line(err)
    assert line.startswith(f"error: cannot write {out}{os.sep}"), line
    assert line.endswith(": No space left on device"), line
    assert _entries(out) == []  # no checkpoint.pt, record.json or *.tmp* left


def test_records_are_strict_json_with_numpy_scalars(tmp_path):
    """json_safe turns numpy scalars into numbers (a float32 NaN into null), so write_json
    never stores a number as its string."""
    from training.record import json_safe, write_json

    value = {"a": np.float32("nan"), "b": np.int64(3), "c": [np.float64(0.5), np.bool_(True)]}
    assert json_safe(value) == {"a": None, "b": 3, "c": [0.5, True]}
    write_json(tmp_path / "r.json", value)
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None, "b": 3, "c": [0.5, True]}


# --- the atomic writers (the search's truncated checkpoint / record / summary.csv) ----------

def _writers(tmp_path):
    import torch

    from galaxies.atomic import atomic_path
    from training.record import write_json, write_npz, write_text

    def checkpoint(path, value):
        with atomic_path(path) as tmp:
            torch.save({"model": torch.zeros(50_000) + value}, tmp)

    return {
        "record.json": lambda path, v: write_json(path, {"metrics": [v] * 50_000}),
        "summary.csv": lambda path, v: write_text(path, f"job_id,objective\n0,{v}\n" * 20_000),
        "predictions.npz": lambda path, v: write_npz(path, {"p": np.full(50_000, v)}),
        "checkpoint.pt": checkpoint,
    }


@pytest.mark.parametrize("name", ["record.json", "summary.csv", "predictions.npz",
                                  "checkpoint.pt"])
def test_writers_on_a_full_disk_keep_the_old_file(tmp_path, name, monkeypatch):
    import galaxies.atomic as atomic

    write = _writers(tmp_path)[name]
    path = tmp_path / name
    write(path, 1.0)
    before = path.read_bytes()

    def full(target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "fsync_path", full)  # data written, the disk refuses to keep it
    with pytest.raises(OSError) as info:
        write(path, 2.0)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before and _entries(tmp_path) == [name]


@pytest.mark.parametrize("name", ["record.json", "summary.csv", "predictions.npz",
                                  "checkpoint.pt"])
def test_writers_on_a_real_fulltmpfs(tmp_path, name):
    with tmpfs(tmp_path / "disk", size="1m") as disk:
        write = _writers(tmp_path)[name]
        path = disk / name
        path.write_bytes(b"old")
        _fill(disk / "filler", leave=100_000)
        with pytest.raises((OSError, RuntimeError)):  # torch.save: RuntimeError
            write(path, 2.0)
        assert path.read_bytes() == b"old"
        assert _entries(disk) == sorted([name, "filler"])


# --- finding 6 (loader half): non-physical pixels, one-class source split, constant channel -

def _write(tmp_path, arrays, edit=None) -> Path:
    folder = tmp_path / "data"
    if edit:
        edit(arrays)
    for domain, data in arrays.items():
        write_domain(domain_paths(folder)[domain], data)
    return folder


@pytest.mark.parametrize("value", [3e38, -3e38, 2e10])
def test_non_physical_pixels_are_refused(tmp_path, tiny_domain_arrays, value):
    def edit(arrays):
        arrays["source"].images[4, 1, 10, 10] = value

    folder = _write(tmp_path, tiny_domain_arrays, edit)
    with pytest.raises(InvalidDatasetError) as info:
        load_benchmark(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'source.h5'}: 1 pixels have |value| > 1e+10")
    assert f"largest {abs(value):.3g}" in message and "first row 4" in message


def test_pixels_at_the_bound_pass(tmp_path, tiny_domain_arrays):
    def edit(arrays):
        arrays["target"].images[0, 0, 0, 0] = -1e10

    load_benchmark(_write(tmp_path, tiny_domain_arrays, edit))


def test_source_split_with_one_class_is_refused(tmp_path, tiny_domain_arrays):
    def edit(arrays):
        source = arrays["source"]
        source.labels[source.split == SPLITS["train"]] = 0

    folder = _write(tmp_path, tiny_domain_arrays, edit)
    with pytest.raises(InvalidDatasetError, match="source split train holds only non-mergers"):
        load_benchmark(folder)


def test_target_split_with_one_class_is_accepted(tmp_path, tiny_domain_arrays):
    def edit(arrays):
        target = arrays["target"]
        target.labels[target.split == SPLITS["val"]] = 1

    load_benchmark(_write(tmp_path, tiny_domain_arrays, edit))


def test_constant_channel_in_a_file_is_refused(tmp_path, tiny_domain_arrays):
    def edit(arrays):
        arrays["target"].images[:, 2] = 0.0

    with pytest.raises(InvalidDatasetError, match=r"channel 2 \(WFC3 F160W, every pixel 0\)"):
        load_benchmark(_write(tmp_path, tiny_domain_arrays, edit))


def test_constant_channel_in_the_train_split_is_a_clear_error(tmp_path, tiny_domain_arrays,
                                                              capsys):
    """The reported case: a traceback from ``channel_stats`` in train.py."""
    def edit(arrays):
        source = arrays["source"]
        source.images[source.split == SPLITS["train"], 1] = 5.0  # varies only outside train

    folder = _write(tmp_path, tiny_domain_arrays, edit)
    with pytest.raises(InvalidDatasetError, match=r"channel 1 \(NC F356W\) is constant over "
                       "the train split"):
        load_benchmark(folder)
    code, err = _train(folder, tmp_path / "trial", capsys)
    assert code == 2 and "is constant over the train split" in _one_line(err)


def test_constant_target_channel_per_domain(tmp_path, tiny_domain_arrays):
    def edit(arrays):
        target = arrays["target"]
        target.images[target.split == SPLITS["train"], 0] = 1.0

    bench = load_benchmark(_write(tmp_path, tiny_domain_arrays, edit))
    assert domain_stats(bench, "source")["target"] == bench.stats
    with pytest.raises(InvalidDatasetError, match="target.h5: channel 0"):
        domain_stats(bench, "per_domain")


# --- finding 10: messages of import and --set ----------------------------------------------

def test_object_labels_error_names_the_labels_file(tmp_path, capsys):
    args = _npy_inputs(tmp_path)
    np.save(tmp_path / "target_y.npy", np.array([0, 1, "x"] * 8, dtype=object),
            allow_pickle=True)
    assert import_real.main([*args, "--out", str(tmp_path / "out")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {tmp_path / 'target_y.npy'}: not a readable numeric"), line
    assert not (tmp_path / "out").exists()


def test_complex_images_are_refused(tmp_path, capsys):
    args = _npy_inputs(tmp_path)
    images = np.load(tmp_path / "source_x.npy").astype(np.complex64) * (1 + 1j)
    np.save(tmp_path / "source_x.npy", images)
    assert import_real.main([*args, "--out", str(tmp_path / "out")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "images have dtype complex64, expected real numbers" in line
    assert "imaginary part would be dropped" in line and "source_x.npy" in line
    assert not (tmp_path / "out").exists()


def test_set_refuses_a_key_the_problem_does_not_use(tmp_path, tiny_domain_pair, capsys):
    from training.cli import CliError, typed_sets
    from training.naming import problem_config

    with pytest.raises(CliError) as info:
        typed_sets("none_deepmerge", ["grl_coeff=2"])
    message = str(info.value)
    assert "none_deepmerge does not use grl_coeff" in message and "method dann" in message
    assert "its keys: lr, weight_decay" in message
    assert "grl_coeff" not in message.split("its keys:")[1]
    with pytest.raises(CliError, match="does not use bottleneck_dim"):
        typed_sets("mmd_deepmerge", ["bottleneck_dim=16"])
    assert typed_sets("dann_resnet", ["grl_coeff=2", "bottleneck_dim=16"]) == {
        "grl_coeff": 2.0, "bottleneck_dim": 16}
    assert problem_config("none_deepmerge", ["lambda_tl=0", "epochs=2"]).epochs == 2  # common
    from training.train import main

    with pytest.raises(SystemExit) as info:
        main(["--problem", "none_deepmerge", "--data", str(tiny_domain_pair), "--out",
              str(tmp_path / "t"), "--set", "grl_coeff=2"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" not in err and "does not use grl_coeff" in _one_line(err)


def test_train_set_errors_are_one_line(tmp_path):
    done = subprocess.run([sys.executable, "training/train.py", "--problem", "none_deepmerge",
                           "--set", "grl_coeff=2", "--out", str(tmp_path / "t")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert line.startswith("error: --set grl_coeff=...: problem none_deepmerge does not use")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("command", ["search", "seeds"])
def test_search_and_seeds_refuse_unused_keys_in_one_line(command, tmp_path, capsys):
    from search.run import main as search_main
    from search.seeds import main as seeds_main

    main, out = (search_main, "--log-dir") if command == "search" else (seeds_main, "--out")
    with pytest.raises(SystemExit) as info:
        main(["--problem", "none_deepmerge", "--set", "grl_coeff=2", out, str(tmp_path / "x")])
    assert info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert "none_deepmerge does not use grl_coeff" in line and "usage:" not in line
    assert not (tmp_path / "x").exists()


def test_validate_cli_checks_a_folder(tiny_domain_pair, capsys):
    assert validate_module.main([str(tiny_domain_pair)]) == 0
    out = capsys.readouterr().out
    assert out.count("OK ") == 3 and "OK pair" in out


def test_write_error_messages(tmp_path):
    from galaxies.atomic import check_writable, write_error_message

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "a.json"))
    expected = f"cannot write {tmp_path / 'a.json'}: No space left on device"
    assert write_error_message(full) == expected
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/source.h5")
    assert write_error_message(denied, tmp_path) == "cannot read /data/source.h5: Permission denied"
    assert write_error_message(denied) == "cannot write /data/source.h5: Permission denied"
    assert write_error_message(FileNotFoundError(errno.ENOENT, "gone", "x")) is None
    assert write_error_message(ValueError("x")) is None
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        check_writable(tmp_path / "file" / "sub")
    check_writable(tmp_path / "new" / "deeper")
    assert _entries(tmp_path) == ["file"]  # the probe creates nothing


def test_simulate_and_import_refuse_an_existing_pair_without_force(tmp_path, capsys):
    """An existing pair is replaced only with --force (one line, exit 2, files untouched)."""
    from galaxies.simulate import main as simulate_main

    out = tmp_path / "data"
    assert import_real.main([*_npy_inputs(tmp_path), "--out", str(out)]) == 0
    before = _digests(out)
    for command in (lambda: import_real.main([*_npy_inputs(tmp_path), "--out", str(out)]),
                    lambda: simulate_main(["--out", str(out), "--n-mergers", "15",
                                           "--n-nonmergers", "3", "--quiet"])):
        with pytest.raises(SystemExit) as exit_info:
            command()
        assert exit_info.value.code == 2
        assert "--force to replace that pair" in _one_line(capsys.readouterr().err)
        assert _digests(out) == before


@pytest.mark.parametrize(("flag", "value"), [("--pixel-scale-arcsec", "-1"),
                                             ("--pixel-scale-arcsec", "0"),
                                             ("--pixel-scale-arcsec", "nan"),
                                             ("--psf-fwhm-arcsec", "inf"), ("--seed", "-1")])
def test_import_refuses_non_physical_attributes(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        import_real.main([*_npy_inputs(tmp_path), "--out", str(tmp_path / "d"), flag, value])
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_more_bad_inputs_get_one_line(tmp_path, capsys):
    """Inputs that once gave a traceback (issue 24, finding 9): one error line, no output."""
    from search.run import main as search_main

    zero = tmp_path / "zero.npy"
    zero.write_bytes(b"")
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 3, 75, 75), dtype=np.float32))
    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros(0, dtype=np.uint8))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for images, message in ((zero, "not a readable numeric .npy"), (empty, "holds no images")):
        code = import_real.main(["--source-images", str(images), "--source-labels", str(labels),
                                 "--target-images", str(images), "--target-labels",
                                 str(labels), "--out", str(tmp_path / "d")])
        assert code != 0
        assert message in _one_line(capsys.readouterr().err)
        assert not (tmp_path / "d").exists()
    for extra, message in ((["--seed", "-1"], "--seed must be"),
                           (["--log-dir", str(a_file)], "is a file"),
                           (["--cpus-per-trial", "nan", "--evaluator", "ray"],
                            "--cpus-per-trial must be")):
        with pytest.raises(SystemExit) as exit_info:
            search_main(["--problem", "none_deepmerge", "--max-evals", "1",
                         *(["--log-dir", str(tmp_path / "s")] if "--log-dir" not in extra
                           else []), *extra])
        assert exit_info.value.code == 2
        assert message in _one_line(capsys.readouterr().err)
        assert not (tmp_path / "s").exists()
