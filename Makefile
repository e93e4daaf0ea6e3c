# Two entry points (README quick start): `make demo` and `make test`.
# Both create .venv when missing and install the package into it (editable).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Vitis-style ap_int/ap_fixed headers for `--types ap`, taken from the hls4ml wheel (no deps).
AP_TYPES_DIR := $(abspath $(VENV))/ap_types
HLS4ML_WHEEL := hls4ml==1.3.0
export CMAMBA_HLS_AP_INCLUDE ?= $(AP_TYPES_DIR)

.PHONY: demo test bench install-demo install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# One stamp per install set; re-installs when pyproject.toml changes.
$(VENV)/.stamp-demo: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[plot]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test,plot,train]'
	touch $@

$(AP_TYPES_DIR)/ap_int.h: | $(PY)
	rm -rf $(VENV)/hls4ml-wheel && mkdir -p $(VENV)/hls4ml-wheel
	$(PIP) download --quiet --no-deps -d $(VENV)/hls4ml-wheel $(HLS4ML_WHEEL)
	$(PY) -m hls_tb.fetch_ap_types $(VENV)/hls4ml-wheel $(AP_TYPES_DIR)

install-demo: $(VENV)/.stamp-demo
install-test: $(VENV)/.stamp-test $(AP_TYPES_DIR)/ap_int.h

demo: install-demo
	$(VENV)/bin/cmamba-hls demo

test: install-test
	$(PY) -m pytest -q

bench: install-test
	$(PY) bench/golden_speed.py
	$(PY) bench/codegen_speed.py
	$(PY) bench/run_memory.py

clean:
	rm -rf reports build .pytest_cache
	# Numba caches key on the defining file only: clear them after editing intsim/fixedpoint.py or intsim/kernels_mac.py
	find intsim -name "*.nbi" -delete -o -name "*.nbc" -delete
