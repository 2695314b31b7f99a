"""Builds ``sacolor._C``: the C++ CPU kernel (csrc/).

The GPU path is Triton (kernels/, installed as ``sacolor.kernels``), compiled
at run time: there is no CUDA C++ in this package, so the build needs no CUDA
toolkit, and a CUDA build of torch builds the same CPU extension.
"""

import glob
import os

from setuptools import setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _sources(pattern: str) -> list[str]:
    # Relative paths: setuptools refuses absolute source paths in sdists.
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


setup(
    ext_modules=[
        cpp_extension.CppExtension(
            "sacolor._C",
            _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp"),
            extra_compile_args={"cxx": ["-O3", "-fopenmp", "-std=c++17"]},
            extra_link_args=["-fopenmp"],
        )
    ],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
