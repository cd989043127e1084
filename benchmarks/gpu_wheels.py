r"""Prepare ``.whl/``: the wheels the GPU machine needs for ``benchmarks/gpu_study.sh``.

Usage::

    python benchmarks/gpu_wheels.py            # downloads, strips GalSim, checks, prints sizes
    python benchmarks/gpu_wheels.py --check    # only the checks, on an existing .whl/

The device machine (``benchmarks/results/gpu.md``) runs Python 3.12 with PyTorch, numpy,
scipy, pandas, h5py, scikit-learn, matplotlib and tqdm (:data:`DEVICE_HAS`, its image's
package list) but not GalSim, DeepHyper, ConfigSpace or astropy, and reaches no registry: the
missing packages travel as wheels in ``.whl/`` (ignored by git), inside the 64 MiB a device
call carries together with the working tree. GalSim's wheel alone is 56 MB: its compiled
module holds 194 MB of debug sections. This script

1. downloads :data:`NEEDS` (the versions of this checkout's environment) with their
   dependencies for CPython 3.12 on manylinux x86-64 (``pip download --only-binary``);
2. drops every wheel of a distribution the device already has (:data:`DEVICE_HAS`);
3. removes the debug sections from GalSim's compiled module (``strip --strip-debug``:
   199 MB -> 5 MB; the code is untouched: this checkout's 3.11 build stripped the same way
   simulated byte-identical images, ``benchmarks/results/gpu.md``) and rewrites the wheel
   with a correct ``RECORD``;
4. checks that every ``Requires-Dist`` of every kept wheel (markers evaluated for CPython
   3.12 on Linux, extras not requested) is met by a kept wheel or by :data:`DEVICE_HAS`, and
   that ``.whl/`` plus the tracked working tree fit in :data:`CARRY_LIMIT`.

Exit status: 0 ready; 1 a check failed (printed); 2 bad arguments or a failed download.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".whl"
CARRY_LIMIT = 64 * 2 ** 20  #: a device call's working tree, carried paths included
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_12_x86_64",
             "manylinux2010_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64")
#: What the study imports that the device lacks, at this checkout's versions (pyproject.toml).
NEEDS = ("galsim==2.8.5", "deephyper==0.13.2", "configspace==1.2.2", "astropy==8.0.2")
#: Distributions the device's image holds (its package list of 2026-11-17, normalised names).
_DEVICE_LIST = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
interface-meta iniconfig jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml
markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda
numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13
nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip
pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo
pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov
pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex
requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
"""
DEVICE_HAS = frozenset(_DEVICE_LIST.split())  # noqa: SIM905 (a list to read and diff)


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name(path: Path) -> str:
    """The normalised distribution name of a wheel file."""
    return normalise(path.name.split("-")[0])


def download(out: Path) -> None:
    """``pip download`` :data:`NEEDS` and their dependencies for CPython 3.12 into ``out``."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", "-d", str(out),
               *(x for p in PLATFORMS for x in ("--platform", p)), *NEEDS]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:  # pip's own warnings (ignored index folders) only on failure
        print(proc.stderr, file=sys.stderr, end="")
        raise subprocess.CalledProcessError(proc.returncode, command)


def record_line(name: str, data: bytes) -> list[str]:
    """A wheel ``RECORD`` row: path, ``sha256=`` urlsafe base64 digest, size."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def strip_wheel(wheel: Path) -> tuple[int, int]:
    """Strip the debug sections of every compiled module in ``wheel``; rewrite its RECORD.

    Returns the wheel's size before and after.
    """
    before = wheel.stat().st_size
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as source:
        entries = {}
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(".so"):
                path = Path(tmp) / "module.so"
                path.write_bytes(data)
                subprocess.run(["strip", "--strip-debug", str(path)], check=True)
                data = path.read_bytes()
            entries[info.filename] = (info, data)
    record = next(name for name in entries if name.endswith(".dist-info/RECORD"))
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    for name, (_, data) in entries.items():
        writer.writerow([record, "", ""] if name == record else record_line(name, data))
    entries[record] = (entries[record][0], rows.getvalue().encode())
    partial = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as target:
        for info, data in entries.values():
            target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    partial.replace(wheel)
    return before, wheel.stat().st_size


def requirements(wheel: Path) -> list[str]:
    """The names a wheel requires on CPython 3.12 / Linux without extras (normalised)."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as handle:
        meta = next(n for n in handle.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(handle.read(meta).decode())
    env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython",
           "extra": ""}
    out = []
    for line in message.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(env):
            out.append(normalise(requirement.name))
    return out


def tracked_size() -> int:
    """Bytes of the tracked working tree (what every device call sends besides carry)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.split(b"\0")
    return sum((REPO / n.decode()).stat().st_size for n in names
               if n and (REPO / n.decode()).is_file())


def check(wheels: Path) -> list[str]:
    """Problems with ``wheels`` (empty: ready)."""
    found = sorted(wheels.glob("*.whl"))
    have = {wheel_name(w) for w in found}
    problems = []
    for need in NEEDS:
        if normalise(need.split("==")[0]) not in have:
            problems.append(f"{need}: no wheel in {wheels}")
    for wheel in found:
        missing = [r for r in requirements(wheel) if r not in have and r not in DEVICE_HAS]
        if missing:
            problems.append(f"{wheel.name} requires {', '.join(missing)}: neither carried nor "
                            "on the device")
        if wheel_name(wheel) in DEVICE_HAS:
            problems.append(f"{wheel.name}: the device has it (a second version stops pip)")
        with zipfile.ZipFile(wheel) as handle:
            big = [i.filename for i in handle.infolist()
                   if i.filename.endswith(".so") and i.file_size > 50 * 2 ** 20]
        if big:
            problems.append(f"{wheel.name}: {', '.join(big)} over 50 MB (not stripped?)")
    total = sum(w.stat().st_size for w in found) + tracked_size()
    if total > CARRY_LIMIT:
        problems.append(f".whl/ and the tracked tree are {total / 2 ** 20:.1f} MiB, over the "
                        f"{CARRY_LIMIT / 2 ** 20:.0f} MiB a device call carries")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_wheels.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check an existing .whl/")
    parser.add_argument("--out", type=Path, default=WHEELS, help="default .whl/")
    args = parser.parse_args(argv)
    if not args.check:
        if shutil.which("strip") is None:
            print("error: 'strip' (binutils) is missing. Fix: install binutils",
                  file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory() as tmp:
            try:
                download(Path(tmp))
            except subprocess.CalledProcessError:
                print("error: pip download failed (see above). Fix: check the package "
                      "registry is reachable", file=sys.stderr)
                return 2
            args.out.mkdir(parents=True, exist_ok=True)
            for old in args.out.glob("*.whl"):
                old.unlink()
            for wheel in sorted(Path(tmp).glob("*.whl")):
                if wheel_name(wheel) not in DEVICE_HAS:
                    shutil.copy2(wheel, args.out / wheel.name)
        for wheel in args.out.glob("galsim-*.whl"):
            before, after = strip_wheel(wheel)
            print(f"{wheel.name}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB (debug "
                  "sections stripped)")
    for wheel in sorted(args.out.glob("*.whl")):
        print(f"{wheel.stat().st_size / 1e6:7.2f} MB  {wheel.name}")
    total = sum(w.stat().st_size for w in args.out.glob("*.whl"))
    print(f"{total / 2 ** 20:.1f} MiB of wheels + {tracked_size() / 2 ** 20:.1f} MiB tracked "
          f"tree (limit {CARRY_LIMIT / 2 ** 20:.0f} MiB a call)")
    problems = check(args.out)
    for problem in problems:
        print(f"problem: {problem}")
    if not problems:
        print(f"ready: carry {args.out.name} (run: bash benchmarks/gpu_study.sh)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
