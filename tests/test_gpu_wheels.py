"""benchmarks/gpu_wheels.py: what .whl/ must hold for the GPU machine, and the stripped GalSim."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_wheels  # noqa: E402


def make_wheel(folder: Path, name: str, requires: list[str], so: bytes | None = None) -> Path:
    files = {f"{name}/__init__.py": b"x = 1\n",
             f"{name}-1.0.dist-info/METADATA": (
                 f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                 + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode()}
    if so is not None:
        files[f"{name}/_ext.so"] = so
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as handle:
        for member, data in files.items():
            handle.writestr(member, data)
        handle.writestr(f"{name}-1.0.dist-info/RECORD", "")
    return path


def test_strip_keeps_a_valid_wheel(tmp_path):
    import shutil

    if shutil.which("strip") is None:
        pytest.skip("no strip (binutils) here")
    import markupsafe

    so = next(Path(markupsafe.__file__).parent.glob("*.so")).read_bytes()
    wheel = make_wheel(tmp_path, "demo", [], so)
    before, after = gpu_wheels.strip_wheel(wheel)
    assert after <= before
    with zipfile.ZipFile(wheel) as handle:
        record = handle.read("demo-1.0.dist-info/RECORD").decode()
        rows = {row[0]: row for row in csv.reader(io.StringIO(record))}
        for member in handle.namelist():  # every file's hash and size as RECORD says
            if member.endswith("RECORD"):
                continue
            data = handle.read(member)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert rows[member][1:] == [f"sha256={digest.decode()}", str(len(data))]
        assert len(handle.read("demo/_ext.so")) <= len(so)


def test_the_check_names_what_the_device_would_lack(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_wheels, "NEEDS", ("demo==1.0",))
    make_wheel(tmp_path, "demo", ["numpy>=1", "not-there", "pywin32; sys_platform == 'win32'",
                                  "extra-thing; extra == 'all'"])
    problems = gpu_wheels.check(tmp_path)
    assert problems == ["demo-1.0-py3-none-any.whl requires not-there: neither carried nor on "
                        "the device"]  # numpy is on the device; win32 and extras do not count
    make_wheel(tmp_path, "numpy", [])
    assert any("the device has it" in p for p in gpu_wheels.check(tmp_path))
    monkeypatch.setattr(gpu_wheels, "NEEDS", ("demo==1.0", "galsim==2.8.5"))
    assert any(p.startswith("galsim==2.8.5: no wheel") for p in gpu_wheels.check(tmp_path))
