# The two set-up commands of the README. Each installs what it needs into ./.venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint typecheck clean bytecode install-check

# The framework (supertask, bps) and the demo application (demo_drp/, a package of its own).
$(STAMP): pyproject.toml demo_drp/pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -e ./demo_drp
	$(MAKE) bytecode
	touch $(STAMP)

install: $(STAMP)

# Bytecode of the editable checkout: pool jobs run as a user who cannot write its __pycache__
# would otherwise compile every module they import, in every job.
bytecode:
	$(BIN)/python -m compileall -q supertask bps demo_drp/src

demo: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m demo_drp.main_job ./demo_run

test: $(STAMP) typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS); \
	status=$$?; if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$status

# A regular (non-editable) install of the framework and the demo, with all their dependencies,
# into a new venv outside the checkout, then the demo from there (several minutes: pip installs everything).
INSTALL_CHECK_DIR ?= /tmp/supertask-install-check
install-check:
	rm -rf $(INSTALL_CHECK_DIR) && $(PYTHON) -m venv $(INSTALL_CHECK_DIR)/venv
	$(INSTALL_CHECK_DIR)/venv/bin/python -m pip install --quiet . ./demo_drp
	cd $(INSTALL_CHECK_DIR) && env -u PYTHONPATH venv/bin/python -m demo_drp.main_job ./demo_run

# mypy --strict over supertask, bps and demo_drp (settings in pyproject.toml [tool.mypy]);
# its cache (.mypy_cache) makes a rerun after a small change take seconds.
typecheck: $(STAMP)
	$(BIN)/mypy

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf demo_run .pytest_cache .ruff_cache .mypy_cache
