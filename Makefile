# Everything runs inside a virtualenv so that a fresh machine needs only
# python3 and access to PyPI:  make test | make demo | make install | make sdist
#
# Overridable:  PYTHON (interpreter that creates the venv), VENV (its path),
# TORCH_SPEC (torch requirement installed when the venv has no torch),
# PYTEST_ARGS (appended to the pytest command line).

PYTHON     ?= python3
VENV       ?= .venv
# Pinned because, with no torch installed, an unpinned `torch` (ours is
# torch>=2.11 in pyproject.toml) makes pip fetch a multi-GB CUDA build. This
# exact version is the local CPU build; set TORCH_SPEC to use another torch.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

VPY   := $(VENV)/bin/python
PIP   := $(VPY) -m pip
# Newer than this stamp => the package (and s2v._C) must be rebuilt. Python
# sources are not listed: the editable install picks them up by itself.
STAMP := $(VENV)/.s2v-install-stamp
BUILD_INPUTS := setup.py pyproject.toml MANIFEST.in \
	$(shell find csrc -type f \( -name '*.cpp' -o -name '*.cu' -o -name '*.h' \
	        -o -name '*.cuh' -o -name '*.hpp' \) 2>/dev/null)

# find_spec instead of `import torch`: same answer, without a 2 s import.
ENSURE_TORCH = $(VPY) -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' \
	|| $(PIP) install '$(TORCH_SPEC)'

.PHONY: venv install test demo sdist clean distclean

# Reuses an existing venv; installs torch only when it is missing from it.
venv: $(VPY)
	@$(ENSURE_TORCH)

$(VPY):
	$(PYTHON) -m venv $(VENV)

# --no-build-isolation: s2v._C must be compiled against the torch in the venv,
# not against one pip would download into an isolated build environment.
$(STAMP): $(VPY) $(BUILD_INPUTS)
	@$(ENSURE_TORCH)
	$(PIP) install 'setuptools>=77' wheel ninja numpy
	$(PIP) install --no-build-isolation -e '.[test,profiling]'
	@touch $(STAMP)

install: $(STAMP)

test: install
	$(VPY) -m pytest -q tests $(PYTEST_ARGS)

demo: install
	$(VPY) -m s2v demo --out demo_out

sdist: venv
	$(PIP) install 'setuptools>=77' wheel ninja build
	$(VPY) -m build --sdist --no-isolation

# The stamp goes too: the editable install's s2v._C lives in s2v/ and is
# deleted here, so the next `make test` must rebuild it. site-packages is
# pruned from the cache sweep: a venv inside the tree keeps its own caches.
clean:
	rm -rf build dist demo_out .pytest_cache *.egg-info s2v/_C*.so s2v/_C*.pyd
	rm -f $(STAMP)
	find . -path ./.git -prune -o -path '*/site-packages' -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
