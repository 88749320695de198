# One path for people and CI: `make demo`, `make test`, `make lint`. Each installs what it needs.
PY      := .venv/bin/python
STAMP   := .venv/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST  := $(PY) -m pytest

.PHONY: demo test lint fmt bench screenshots system-deps venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f .venv/.installed-* && touch $@

system-deps:
	@scripts/system-deps.sh mosquitto influxdb mosquitto-clients chromium fonts-noto-cjk openssl

demo: system-deps venv
	$(PY) -m crowdflow.cli demo

# Browser tests run in a second pytest process: Playwright's sync API and pytest-asyncio must not share a loop.
test: system-deps venv
	$(PYTEST) -q -p no:cacheprovider --ignore=tests/browser
	$(PYTEST) -q -p no:cacheprovider tests/browser

lint: venv
	$(PY) -m ruff check .
	$(PY) -m mypy

fmt: venv
	$(PY) -m ruff check --fix .

bench: system-deps venv
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The README's pictures: the wall and the officer page during the gathering surge, taken in Debian's Chromium.
screenshots: system-deps venv
	$(PY) scripts/screenshots.py --out docs/screenshots

clean:
	rm -rf .venv var .mypy_cache .ruff_cache .pytest_cache
