"""Builds ``sacolor._C``: the C++ CPU kernel always, the CUDA kernel where a
CUDA toolkit and a CUDA build of torch are both present.

Set ``SACOLOR_SKIP_CUDA_BUILD=1`` to build the CPU kernel only.
"""

import glob
import os

from setuptools import setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _sources(pattern: str) -> list[str]:
    # Relative paths: setuptools refuses absolute source paths in sdists.
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _want_cuda() -> bool:
    if os.environ.get("SACOLOR_SKIP_CUDA_BUILD", "0") == "1":
        return False
    import torch

    return (
        torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
        and bool(_sources("csrc/cuda/*.cu"))
    )


def _extension():
    sources = _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp")
    cxx = ["-O3", "-fopenmp", "-std=c++17"]
    define_macros = []
    if _want_cuda():
        sources += _sources("csrc/cuda/*.cu") + _sources("csrc/cuda/*.cpp")
        define_macros.append(("SACOLOR_WITH_CUDA", None))
        nvcc = ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo"]
        return cpp_extension.CUDAExtension(
            "sacolor._C",
            sources,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=["-fopenmp"],
        )
    return cpp_extension.CppExtension(
        "sacolor._C",
        sources,
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx},
        extra_link_args=["-fopenmp"],
    )


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
