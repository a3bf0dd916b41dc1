"""Copies liblofi into the package at install time, so that ``pip install ./python`` after
``make build`` gives a package that works without LOFI_LIBRARY or ``make install``.

Where the copy comes from: ``$LOFI_LIBRARY`` if set (a file, or a directory holding
liblofi.so), else ``../target/release/liblofi.so`` (this directory's parent is the repository).
``LOFI_BUNDLE_LIBRARY=0`` installs without a copy (the package then finds liblofi through
LOFI_LIBRARY or the system loader at import). No compiler runs: the wheel only carries the
library ``cargo build`` made. The copy keeps its RUNPATH, i.e. libtorch where the build found it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent


def library_source() -> Path | None:
    env = os.environ.get("LOFI_LIBRARY")
    if env:
        p = Path(env)
        return p / "liblofi.so" if p.is_dir() else p
    p = HERE.parent / "target" / "release" / "liblofi.so"
    return p if p.exists() else None


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        if os.environ.get("LOFI_BUNDLE_LIBRARY", "1") == "0":
            return
        src = library_source()
        if src is None or not src.is_file():
            raise SystemExit(
                "lofi: liblofi.so not found (looked at $LOFI_LIBRARY and ../target/release). Run `make build` "
                "in the repository first, or set LOFI_LIBRARY=/path/to/liblofi.so, or install without a "
                "bundled copy with LOFI_BUNDLE_LIBRARY=0 (then liblofi must be installed, e.g. `make install`)."
            )
        dst = Path(self.build_lib) / "lofi" / "_lib"
        dst.mkdir(parents=True, exist_ok=True)
        # Copy the file (not a symlink): the package must not depend on the build tree.
        shutil.copyfile(src.resolve(), dst / "liblofi.so")
        os.chmod(dst / "liblofi.so", 0o755)


class BinaryDistribution(Distribution):
    """The wheel carries a native library: tag it for this platform, not py3-none-any."""

    def has_ext_modules(self):
        return True


# Package layout here rather than in pyproject's [tool.setuptools] (beta, and noisy, in the
# setuptools 65 that Python 3.11's venvs carry).
setup(
    package_dir={"": "src"},
    packages=["lofi"],
    cmdclass={"build_py": BuildPyWithLibrary},
    distclass=BinaryDistribution,
)
