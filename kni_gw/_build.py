"""cffi build script: out-of-line API mode against pkg-config's libdpdk.

csrc/kni_gw.h is both what C exports and what cdef reads; nothing of DPDK's
own headers is preprocessed here.
"""
import os
import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
CSRC = HERE.parent / "csrc"
# one list of C sources for every build that compiles them (fuzz/build.sh too)
SOURCES = [ln.strip() for ln in (CSRC / "SOURCES").read_text().splitlines()
           if ln.strip() and not ln.startswith("#")]
# compiler flags shared likewise
CFLAGS = [ln.strip() for ln in (CSRC / "CFLAGS").read_text().splitlines()
          if ln.strip() and not ln.startswith("#")]


def _cdef_text() -> str:
    text = (CSRC / "kni_gw.h").read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    # keep declarations and integer #defines, drop the include guard
    lines = []
    for line in text.splitlines():
        if line.startswith("#ifndef") or line.startswith("#endif"):
            continue
        if line.startswith("#define KNI_GW_H"):
            continue
        lines.append(line)
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())
ffibuilder.set_source_pkgconfig(
    "kni_gw._dataplane",
    ["libdpdk"],
    '#include "kni_gw.h"\n',
    sources=[os.path.relpath(CSRC / s) for s in SOURCES],
    include_dirs=[os.path.relpath(CSRC)],
    extra_compile_args=["-O3", "-g"] + CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
