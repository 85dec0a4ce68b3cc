# abawkit: `make demo` and `make test` are the only two commands a fresh machine needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.abawkit-installed
DEMO_DATA ?= data/demo
DEMO_MANIFEST ?= data_manifests/demo
PIPELINE ?= pipelines/demo.yaml
RUN ?= demo

.PHONY: setup demo demo-data test lab clean-demo help

help:
	@echo "make demo   - set up (when needed) and run the whole chain on the embedded demo data"
	@echo "make test   - set up (when needed) and run the test suite"
	@echo "make setup  - create $(VENV), install abawkit and its pinned dependencies, register the Jupyter kernel"
	@echo "make lab    - open JupyterLab on notebooks/ with the abawkit kernel"

setup: $(STAMP)

# The stamp depends on pyproject.toml: changing the dependencies reinstalls.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel setuptools
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name abawkit --display-name "abawkit (Python 3)" >/dev/null
	$(BIN)/python -c "import torch, torchvision, timm, decord, mediapipe, cv2; print('abawkit environment ready: torch', torch.__version__)"
	touch $(STAMP)

demo-data: setup
	$(BIN)/abawkit demo-data --out $(DEMO_DATA)
	$(BIN)/abawkit manifest --preset demo --affwild2 $(DEMO_DATA) --out $(DEMO_MANIFEST)

demo: setup
	$(BIN)/abawkit run $(PIPELINE) --run-dir runs/$(RUN)

test: setup
	$(BIN)/python -m pytest -q

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_MANIFEST) runs/$(RUN)
