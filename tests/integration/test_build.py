"""`sam build`, offline, as a deploy would run it: what each function carries, and that every
compiled file runs on Lambda's python3.13 (Amazon Linux 2023) for the stack's architecture.

The build needs a Python 3.13 on PATH (scripts/find-python313.sh finds one) and PyPI.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts import build_sizes

ROOT = Path(__file__).resolve().parents[2]
MB = build_sizes.MB
LAYERS = ("RuntimeLayer", "RenderLayer", "SplitEngineLayer")
# Amazon Linux 2023, which Lambda's python3.13 runs on: glibc 2.34, GCC 11's libstdc++.
GLIBC_MINOR = 34
GLIBCXX_PATCH = 29
ELF_MACHINE = {"arm64": 0xB7, "x86_64": 0x3E}
WHEEL_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    """The default stack (arm64), built once for the tests of this module."""
    return build_sizes.sam_build(tmp_path_factory.mktemp("sam-build"))


@pytest.fixture(scope="module")
def layers_of() -> dict[str, list[str]]:
    from samcli.yamlhelper import yaml_parse

    return build_sizes.function_layers(yaml_parse((ROOT / "template.yaml").read_text()))


def newest_version(binary: bytes, prefix: bytes) -> int:
    """The highest symbol version `prefix`N a shared library asks for (0 if none)."""
    found = re.findall(re.escape(prefix) + rb"(\d+)", binary)
    return max((int(minor) for minor in found), default=0)


def elf_files(tree: Path) -> list[Path]:
    return [
        f
        for f in tree.rglob("*")
        if f.is_file() and not f.is_symlink() and f.read_bytes()[:4] == b"\x7fELF"
    ]


def binary_problems(tree: Path, architecture: str) -> list[str]:
    """Every ELF file under tree that Lambda's python3.13 on `architecture` could not load."""
    problems = []
    arch = WHEEL_ARCH[architecture]
    for binary in elf_files(tree):
        data = binary.read_bytes()
        if int.from_bytes(data[18:20], "little") != ELF_MACHINE[architecture]:
            problems.append(f"{binary}: not an {arch} binary")
        if newest_version(data, b"GLIBC_2.") > GLIBC_MINOR:
            problems.append(f"{binary}: needs glibc above 2.{GLIBC_MINOR}")
        if newest_version(data, b"GLIBCXX_3.4.") > GLIBCXX_PATCH:
            problems.append(f"{binary}: needs a libstdc++ newer than GCC 11's")
        # An extension module is built for one CPython (cpython-313-...) or the stable ABI (abi3).
        extension = re.search(r"\.cpython-(\d+)-(\w+)-linux-gnu\.so$", binary.name)
        if extension and extension.groups() != ("313", arch):
            problems.append(f"{binary}: an extension for {extension.group(0)}")
    return problems


def wheel_tag_fits(tag: str, architecture: str) -> bool:
    """A wheel tag (WHEEL's `Tag:` line) that Lambda's python3.13 on `architecture` accepts."""
    interpreter, abi, platform = tag.split("-")
    stable = abi == "abi3" and re.fullmatch(r"cp3\d+", interpreter)
    if not (interpreter in ("py3", "py2.py3", "cp313") or stable):
        return False
    if stable and int(interpreter[3:]) > 13:
        return False
    if abi not in ("none", "abi3", "cp313"):
        return False
    arch = WHEEL_ARCH[architecture]
    glibc = re.fullmatch(rf"manylinux_2_(\d+)_{arch}", platform)
    return (
        platform == "any"
        or platform == f"manylinux2014_{arch}"
        or bool(glibc and int(glibc.group(1)) <= GLIBC_MINOR)
    )


def wheel_problems(layer: Path, architecture: str) -> list[str]:
    problems = []
    wheels = list(layer.glob("python/*.dist-info/WHEEL"))
    assert wheels, f"{layer}: no installed distributions"
    for wheel in wheels:
        lines = wheel.read_text().splitlines()
        tags = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Tag:")]
        if not any(wheel_tag_fits(tag, architecture) for tag in tags):
            problems.append(f"{wheel.parent.name}: {tags}")
    return problems


def test_the_binary_checks_refuse_what_lambda_could_not_load():
    assert wheel_tag_fits("cp313-cp313-manylinux_2_28_aarch64", "arm64")
    assert wheel_tag_fits("cp39-abi3-manylinux2014_aarch64", "arm64")
    assert wheel_tag_fits("py3-none-any", "x86_64")
    assert not wheel_tag_fits("cp311-cp311-manylinux_2_28_aarch64", "arm64")  # another CPython
    assert not wheel_tag_fits("cp313-cp313-manylinux_2_35_aarch64", "arm64")  # glibc too new
    assert not wheel_tag_fits("cp313-cp313-manylinux_2_28_x86_64", "arm64")  # another machine
    assert not wheel_tag_fits("cp313-cp313t-manylinux_2_28_aarch64", "arm64")  # free-threaded


@pytest.mark.slow
def test_each_function_gets_only_its_dependencies(build, layers_of):
    layers = {name: build / name / "python" for name in LAYERS}
    assert (layers["RuntimeLayer"] / "aws_lambda_powertools").is_dir()
    assert (layers["RuntimeLayer"] / "pydantic").is_dir()  # the step contracts
    for layer in layers.values():
        assert not {p.name for p in layer.iterdir()} & {"moto", "sqlalchemy", "samcli"}
    assert (layers["RenderLayer"] / "PIL").is_dir() and (
        layers["RenderLayer"] / "requests"
    ).is_dir()
    assert (layers["RenderLayer"] / "pi_heif").is_dir()  # HEIC covers
    assert (layers["SplitEngineLayer"] / "pyarrow").is_dir()
    assert set(layers_of) == {
        "StartFromS3Function",
        "StartFromSqsFunction",
        "SplitFunction",
        "RenderFunction",
        "AggregateFunction",
    }
    for function, needs in layers_of.items():
        package = build / function
        assert (package / "collage" / "handlers" / "render.py").is_file(), function
        # The function's own package holds the collage code only; libraries are in its layers.
        assert not (package / "PIL").exists() and not (package / "pyarrow").exists(), function
        assert not (package / "aws_lambda_powertools").exists(), function
        # Only the deployed package: no local tools, emulator or CLI, none of their libraries.
        shipped = {p.name for p in package.iterdir()}
        assert not shipped & {"collage_tools", "moto", "sqlalchemy", "samcli", "tools"}, function
        assert not list(package.rglob("emulator.py")) and not list(package.rglob("cli.py"))
        carried = {p.name for layer in needs for p in layers[layer].iterdir()}
        if function != "RenderFunction":
            assert not carried & {"PIL", "requests", "pi_heif"}, function
        if function != "SplitFunction":
            assert "pyarrow" not in carried, function
    built = (build / "template.yaml").read_text()
    assert "collage_workflow.asl.json" in built


@pytest.mark.slow
def test_every_function_fits_lambdas_limit_and_the_readme_table_is_the_build(build, layers_of):
    measured = build_sizes.sizes(build, layers_of)
    print(
        {
            f: f"{code / MB:.1f} MB code, {total / MB:.1f} MB with layers"
            for f, (code, total) in measured.items()
        }
    )
    for function, (code, total) in measured.items():
        # Lambda's limit for a function and its layers, unzipped, is 250 MB.
        assert total < 250 * MB, (function, total / MB)
        assert code < 1 * MB, (function, code / MB)  # the collage package alone
    # The starters and the aggregate step: Powertools (with the X-Ray SDK and its botocore) only.
    for function in ("StartFromS3Function", "StartFromSqsFunction", "AggregateFunction"):
        assert measured[function][1] < 50 * MB, measured
    table = build_sizes.markdown(measured, layers_of)
    assert table in (ROOT / "docs" / "deploy.md").read_text(), (
        f"the size table in docs/deploy.md is not this build's; run: "
        f".venv/bin/python scripts/build_sizes.py --write docs/deploy.md\n{table}"
    )


@pytest.mark.slow
def test_every_compiled_file_runs_on_lambdas_python313_arm64(build):
    for layer in LAYERS:
        # The layers carry compiled code (Pillow, pi-heif, pyarrow, pydantic-core, ...).
        assert elf_files(build / layer), layer
        assert binary_problems(build / layer, "arm64") == [], layer
        assert wheel_problems(build / layer, "arm64") == [], layer
    for extension in (
        "RenderLayer/python/PIL/_imaging.cpython-313-aarch64-linux-gnu.so",
        "RenderLayer/python/_pi_heif.cpython-313-aarch64-linux-gnu.so",
        "SplitEngineLayer/python/pyarrow/lib.cpython-313-aarch64-linux-gnu.so",
        "RuntimeLayer/python/pydantic_core/_pydantic_core.cpython-313-aarch64-linux-gnu.so",
    ):
        assert (build / extension).is_file(), extension


@pytest.mark.slow
def test_an_x86_64_stack_gets_x86_64_layers(tmp_path):
    """Architecture=x86_64 builds the layers for x86_64 (BuildArchitecture follows it)."""
    build = build_sizes.sam_build(tmp_path, architecture="x86_64", resources=("RuntimeLayer",))
    core = build / "RuntimeLayer/python/pydantic_core"
    assert list(core.glob("_pydantic_core.cpython-313-x86_64-linux-gnu.so"))
    assert binary_problems(build / "RuntimeLayer", "x86_64") == []
    assert wheel_problems(build / "RuntimeLayer", "x86_64") == []
    # And the same checks refuse it as an arm64 layer: they look at the files, not the names.
    assert binary_problems(build / "RuntimeLayer", "arm64")
    assert wheel_problems(build / "RuntimeLayer", "arm64")
