# `make demo`: set everything up and run the main job. `make test`: the test suite.
VENV := .venv/bin
OUT ?= demo_out

.PHONY: setup demo test test-slow lint bench

setup:
	./scripts/setup.sh

demo: setup
	$(VENV)/after demo --out $(OUT)

test: setup
	$(VENV)/python -m pytest

test-slow: setup
	$(VENV)/python -m pytest -m slow

lint: setup
	$(VENV)/ruff check src tests benchmarks
	$(VENV)/ruff format --check src tests benchmarks
