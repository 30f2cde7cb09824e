"""Build of ``mta_kernels._C`` (torch.utils.cpp_extension) and packaging of mta_kernels + mta.

One build, two switches:
* CUDA kernels are compiled when torch is a CUDA build, nvcc is found and
  ``MTA_SKIP_CUDA_BUILD`` is not set; archs come from ``TORCH_CUDA_ARCH_LIST``
  (default: this machine's GPU, else "8.0;9.0").
* ``MAX_JOBS`` bounds parallel compilation (ninja).

The wheel's local version names what it was built for (``+cpu`` or ``+cu130.sm80.sm90``) and
its metadata pins the exact torch it was built against: the C++ ABI is only stable there.
Build with ``--no-build-isolation`` (an isolated build would fetch another torch).
Extras (``pip install 'mta_kernels[transformers,math]'``, or ``[all]``): see python/mta/extras.py.
"""

from __future__ import annotations

import glob
import os
import runpy

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
BASE_VERSION = "0.1.0"


def _with_cuda() -> bool:
    if os.environ.get("MTA_SKIP_CUDA_BUILD", "0") not in ("", "0"):
        return False
    return torch.version.cuda is not None and CUDA_HOME is not None


def _arch_list() -> list[str]:
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if not archs:
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            archs = f"{major}.{minor}"
        else:
            archs = "8.0;9.0"
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs  # cpp_extension reads it from here
    return [a for a in archs.replace(",", ";").replace(" ", ";").split(";") if a]


def _local_version(with_cuda: bool) -> str:
    if not with_cuda:
        return "cpu"
    cuda = "cu" + torch.version.cuda.replace(".", "")
    sms = sorted({"sm" + a.replace("+PTX", "").replace(".", "") for a in _arch_list()})
    return ".".join([cuda, *sms])


def _extension():
    with_cuda = _with_cuda()
    sources = [os.path.relpath(p, ROOT) for p in sorted(glob.glob(os.path.join(ROOT, "csrc", "*.cpp")))]
    sources += [os.path.relpath(p, ROOT) for p in sorted(glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")))]
    cxx_flags = ["-O3", "-fopenmp"]  # the C++ standard is cpp_extension's, matching torch's headers
    if with_cuda:
        _arch_list()
        sources += [os.path.relpath(p, ROOT) for p in sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))]
        return with_cuda, CUDAExtension(
            "mta_kernels._C",
            sources,
            define_macros=[("MTA_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
            extra_link_args=["-fopenmp"],
        )
    return with_cuda, CppExtension("mta_kernels._C", sources, extra_compile_args=cxx_flags, extra_link_args=["-fopenmp"])


WITH_CUDA, EXTENSION = _extension()
# Optional dependencies per group of commands; python/mta/extras.py is the one list (its
# `require` names the extra to install when a command misses one). It imports only the stdlib.
EXTRAS_REQUIRE = runpy.run_path(os.path.join(ROOT, "python", "mta", "extras.py"))["requirements"]()

setup(
    name="mta_kernels",
    version=f"{BASE_VERSION}+{_local_version(WITH_CUDA)}",
    description="Fused GPU kernels and methods for reasoning-efficiency and alignment (SBT, MTA RL, TFPI, WSD)",
    packages=find_packages(include=["mta_kernels", "mta_kernels.*"])
    + ["mta"]
    + [f"mta.{p}" for p in find_packages("python/mta")],
    package_dir={"mta_kernels": "mta_kernels", "mta": "python/mta"},
    package_data={"mta.sbt": ["data/*.jsonl", "data/*.md", "data/*.py"], "mta.tfpi": ["configs/*.toml"]},
    python_requires=">=3.10",
    install_requires=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "tqdm"],
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["mta=mta.cli:main"]},
    ext_modules=[EXTENSION],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
