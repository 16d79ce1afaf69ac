# Two commands do all the set-up from a fresh clone:
#   make demo   creates .venv, installs edgecam[all], runs `edgecam demo`
#   make test   creates .venv if missing, installs edgecam[all,dev], runs the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test test-fast arm64-check bench real-cameras locate-head clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --editable '.[all]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-all
	$(BIN)/pip install --quiet --editable '.[all,dev]'
	touch $@

demo: $(VENV)/.installed-all
	$(BIN)/edgecam demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

# The unit tests only (no training or export): seconds, for the edit loop.
test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# aarch64 (Raspberry Pi / Jetson) proof under qemu: needs root; see devices/ci/arm64-check.sh.
# It exports a small model with the quick demo, full int8 and mixed precision (three layers in
# float, devices/ci/export-mixed.sh), runs both on x86 and on emulated Cortex-A72/A76 on identical
# inputs, and fails on any difference (int8 outputs must be bit-exact).
ARM64_MODELS ?= runs/ci-quick/export runs/ci-quick/export-mixed
arm64-check: $(VENV)/.installed-all
	test -f runs/ci-quick/export/model-int8.tflite.manifest.json || $(BIN)/edgecam demo --quick --out runs/ci-quick
	test -f runs/ci-quick/export-mixed/model-int8.tflite.manifest.json || bash devices/ci/export-mixed.sh runs/ci-quick $(BIN)/edgecam
	EDGECAM_HOST_PYTHON=$(abspath $(BIN)/python) \
	EDGECAM_ARM64_EXACT="$${EDGECAM_ARM64_EXACT-*int8.tflite/*/scores *int8.tflite/*/features *int8.onnx/*/features}" \
		bash devices/ci/arm64-check.sh $(ARM64_MODELS)

bench: $(VENV)/.installed-all
	$(BIN)/edgecam bench runs/demo/export --keras runs/demo/train/model.keras

# The real-cameras benchmark (README, "Real camera frames"): train on the shared
# harbour and shore frames, export float and int8, and evaluate both on the
# frames the run held out. About 45 minutes on 2 cores; needs ../shared.
SHARED ?= ../shared
REAL_RUN ?= runs/real
REAL_DATA := $(SHARED)/data/maritime/shore_livecams $(SHARED)/data/maritime/uvic_sooke
real-cameras: $(VENV)/.installed-all
	$(BIN)/edgecam train $(REAL_DATA) --positive vessel,sea --out $(REAL_RUN) \
		--weights $(SHARED)/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5 \
		--input-size 128 --scale 1.5 --epochs 3 --finetune-epochs 8 --finetune-blocks 8
	$(BIN)/edgecam export $(REAL_RUN) --formats tflite-fp32,tflite-int8 --calib $(REAL_RUN)/tiles/train --out $(REAL_RUN)/export
	$(BIN)/edgecam evaluate $(REAL_RUN) $(REAL_DATA) --positive vessel,sea

# The localisation head (README, "A localisation head on the same encoder"): train it on
# the frozen encoder of the real-cameras run (its threshold and extra scale chosen on the
# validation frames), export float, int8 and ONNX with the head's outputs, evaluate CAM and
# head boxes side by side on the validation frames and then on the held-out frames, and
# time the combined artifact against the classifier at 1080p. About 25 minutes here.
LOCATE_RUN ?= runs/locate
locate-head: $(VENV)/.installed-all
	$(BIN)/edgecam train $(REAL_DATA) --head locate --from-run $(REAL_RUN) --positive vessel,sea \
		--out $(LOCATE_RUN) --time-budget 20m
	$(BIN)/edgecam export $(LOCATE_RUN) --formats tflite-fp32,tflite-int8 \
		--calib $(REAL_RUN)/tiles/train --out $(LOCATE_RUN)/export
	$(BIN)/edgecam export $(LOCATE_RUN) --formats onnx-fp32 --out $(LOCATE_RUN)/export-onnx
	$(BIN)/edgecam evaluate $(LOCATE_RUN) $(REAL_DATA) --positive vessel,sea --split $(LOCATE_RUN)/split.json \
		--split-name val --out $(LOCATE_RUN)/eval-val
	$(BIN)/edgecam evaluate $(LOCATE_RUN) $(REAL_DATA) --positive vessel,sea --split $(LOCATE_RUN)/split.json
	$(BIN)/edgecam verify $(LOCATE_RUN)/export --data $(REAL_RUN)/tiles/val --positive vessel --limit 200
	$(BIN)/edgecam verify $(LOCATE_RUN)/export-onnx --data $(REAL_RUN)/tiles/val --positive vessel --limit 200
	$(BIN)/python -m training.locate_cost $(REAL_RUN) $(LOCATE_RUN)

clean:
	rm -rf $(VENV) runs .pytest_cache
