"""Packaging: the runtime wheel builds without a warning and carries its licence, README, models and
samples; the three distributions share one version and one licence text."""

import os
import re
import subprocess
import sys
import zipfile

import pytest
import tomllib

from tests.helpers import ROOT

DISTRIBUTIONS = {
    "lvunet-edge": ROOT,
    "lvunet-runtime": ROOT / "runtime",
    "lvunet-export": ROOT / "export",
}


def test_one_version_one_licence():
    versions = {
        name: tomllib.loads((folder / "pyproject.toml").read_text())["project"]["version"]
        for name, folder in DISTRIBUTIONS.items()
    }
    import lvunet_export
    import lvunet_runtime

    import lvunet_edge

    modules = {lvunet_runtime.__version__, lvunet_edge.__version__, lvunet_export.__version__}
    assert len(set(versions.values()) | modules) == 1, (versions, modules)
    licences = {(folder / "LICENSE").read_text() for folder in DISTRIBUTIONS.values()}
    assert len(licences) == 1 and "MIT License" in licences.pop()
    for folder in DISTRIBUTIONS.values():
        project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
        assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
        assert (folder / project["readme"]).is_file()


def test_runtime_wheel_builds_without_warnings(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-v",
            "-w",
            str(tmp_path),
            str(ROOT / "runtime"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # pip's own notes about this machine's index configuration are not build warnings
    lines = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if re.search(r"warn|deprecat", line, re.I)
        and "is ignored: it is neither a file" not in line
    ]
    assert not lines, lines
    (wheel,) = tmp_path.glob("lvunet_runtime-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for expected in (
        "licenses/LICENSE",
        "models/polyp.onnx",
        "models/breast-ultrasound.onnx",
        "models/MODEL_CARD.md",
        "samples/README.md",
        "serve/static/index.html",
        "serve/static/app.js",
        "serve/static/style.css",
        "serve/static/icon.svg",
        "serve/static/process.js",
        "serve/static/browser.js",
    ):
        assert any(n.endswith(expected) for n in names), expected
    assert not [n for n in names if ".wasm" in n or "/ort/" in n]  # ONNX Runtime Web: --static only
    metadata = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    )
    assert "License-Expression: MIT" in metadata and "# lvunet-runtime" in metadata
    assert "Provides-Extra: serve" in metadata and 'extra == "serve"' in metadata
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))
    )
    assert b"lvunet-serve = lvunet_runtime.serve.cli:main" in entry_points


def test_every_benchmark_script_is_in_the_index_and_every_timer_uses_the_shared_one():
    index = (ROOT / "benchmarks" / "README.md").read_text()
    scripts = sorted(p.name for p in (ROOT / "benchmarks").iterdir() if p.suffix in (".py", ".sh"))
    assert len(scripts) >= 19
    assert [s for s in scripts if f"`{s}`" not in index] == []
    for path in (ROOT / "benchmarks").glob("*.py"):
        text = path.read_text()
        if path.name != "timing.py" and ("perf_counter" in text or "process_time" in text):
            assert "from timing import" in text, path.name  # times with the shared function
        if path.name != "timing.py" and "json.dump" in text and "machine" in text:
            assert "machine_header(" in text, path.name  # one machine header per result file


@pytest.mark.parametrize("program", ["infer", "eval", "bench", "serve", "train", "export"])
def test_help_at_80_columns_cuts_no_word_and_shows_extras_as_written(program, tmp_path):
    import os

    from tests.helpers import run_entry

    result = run_entry(program, ["--help"], env={**os.environ, "COLUMNS": "80"})
    text = result.stdout
    assert result.returncode == 0 and text.strip(), result.stderr
    assert "\u2026" not in text  # no word cut with an ellipsis
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "--debug" in text and "Exit codes" in text
    assert "benchmarks/" not in text and "docs/" not in text  # a pip user has no such folders
    if program == "train":
        assert "(required," in text and "unless --resume)" in text  # wrapped at 80 columns
    if program == "infer":  # rich markup used to eat these: "(needs lvunet-runtime)"
        assert "runtime[dicom]" in text and "runtime[ray]" in text
