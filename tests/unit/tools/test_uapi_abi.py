"""The ctypes binding matches kmod/uapi/pool.h: sizes, offsets, ioctl numbers, constants.

A C program compiled against the header prints every value; the test compares
them with pooltools.kernel.uapi. Skipped only when no C compiler is installed.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
from pooltools.kernel import uapi

REPO = Path(__file__).resolve().parents[3]
HEADER = REPO / "kmod" / "uapi" / "pool.h"


def _c_program() -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        '#include "pool.h"',
        '#define F(s, f) printf("F %s.%s %zu %zu\\n", #s, #f, offsetof(struct s, f), sizeof(((struct s *)0)->f))',
        "int main(void) {",
    ]
    for name, struct in uapi.STRUCTS.items():
        lines.append(f'  printf("S {name} %zu %zu\\n", sizeof(struct {name}), _Alignof(struct {name}));')
        for field, *_ in struct._fields_:
            lines.append(f"  F({name}, {field});")
    for name in uapi.IOCTLS:
        lines.append(f'  printf("I {name} %lu\\n", (unsigned long)({name}));')
    for name in uapi.CONSTANTS:
        lines.append(f'  printf("C {name} %llu\\n", (unsigned long long)({name}));')
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def c_values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, ...]]:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("abi")
    src = d / "abi.c"
    src.write_text(_c_program())
    exe = d / "abi"
    # linux/types.h and linux/ioctl.h come from the system's kernel headers (linux-libc-dev).
    subprocess.run(
        [cc, "-std=gnu11", "-Wall", "-Werror", "-I", str(HEADER.parent), "-o", str(exe), str(src)], check=True
    )
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    values: dict[str, tuple[int, ...]] = {}
    for line in out.splitlines():
        kind, name, *nums = line.split()
        values[f"{kind} {name}"] = tuple(int(n) for n in nums)
    return values


@pytest.mark.parametrize("name", list(uapi.STRUCTS))
def test_struct_layout(name: str, c_values: dict[str, tuple[int, ...]]) -> None:
    struct = uapi.STRUCTS[name]
    assert c_values[f"S {name}"] == (ctypes.sizeof(struct), ctypes.alignment(struct)), name
    for field, *_ in struct._fields_:
        desc = getattr(struct, field)
        assert c_values[f"F {name}.{field}"] == (desc.offset, desc.size), f"{name}.{field}"


def test_every_header_struct_is_bound() -> None:
    import re

    declared = set(re.findall(r"^struct (pool_\w+) \{", HEADER.read_text(), re.M))
    assert declared == set(uapi.STRUCTS)


def test_ioctl_numbers(c_values: dict[str, tuple[int, ...]]) -> None:
    import re

    declared = set(re.findall(r"^#define (POOL_(?:SESS_)?IOC_\w+)\s+_IO", HEADER.read_text(), re.M))
    assert declared == set(uapi.IOCTLS)
    for name, value in uapi.IOCTLS.items():
        assert c_values[f"I {name}"] == (value,), name


def test_constants(c_values: dict[str, tuple[int, ...]]) -> None:
    for name, value in uapi.CONSTANTS.items():
        assert c_values[f"C {name}"] == (value,), name


def test_every_header_constant_is_bound() -> None:
    import re

    text = HEADER.read_text()
    names = set(re.findall(r"^#define (POOL_\w+)\s+(?:\(|\d|0x)", text, re.M))
    names |= set(re.findall(r"^\t(_*POOL_\w+)\s*(?:=|,)", text, re.M))
    names -= set(uapi.IOCTLS) | {"POOL_IOC_MAGIC"}
    assert names - set(uapi.CONSTANTS) == set()
