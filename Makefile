# `make run` and `make test` work on a fresh clone with only Python 3.11+ and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/lossbench list frameworks
	$(BIN)/lossbench eval bce --framework torch --dtype float32 --input '[0.0, 0.3]' --target '[1.0, 1.0]' --reduction none
	$(BIN)/lossbench eval bce --framework tensorflow --dtype float32 --input '[0.0, 0.3]' --target '[1.0, 1.0]' --reduction none
	$(BIN)/lossbench eval log_cosh --framework tensorflow --dtype float64 --input '[1e-3, 0.5]' --target '[0, 0]' --reduction none
	$(BIN)/lossbench eval bce_logits --framework numpy --impl naive --dtype float32 --input '[30.0]' --target '[1.0]' --reduction sum --grad
	$(BIN)/lossbench sweep --quick --time
	$(BIN)/lossbench atlas --no-progress > reports/atlas.txt
	@echo "conventions atlas: reports/atlas.txt (also stored in reports/results.sqlite)"
	$(BIN)/lossbench results --worst 25
	$(BIN)/lossbench results --speed > reports/speed.txt
	@echo "timed cells: reports/speed.txt"

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
