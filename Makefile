# Two commands do all set-up:  `make run` (the app)  and  `make test` (the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test test-fast bench robust check smoke i18n clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/llmcore-tui

# everything, including every lab's --toy run (what CI runs). Unit and UI tests run on two
# workers; the labs run one at a time, since some measure timings (pipeline bubbles).
test: $(STAMP)
	$(PY) -m pytest -m "not lab" -n 2 $(PYTEST_ARGS)
	$(PY) -m pytest -m lab $(PYTEST_ARGS)

# unit and UI tests only: skips the lab toy runs
test-fast: $(STAMP)
	$(PY) -m pytest -m "not lab" -n 2 $(PYTEST_ARGS)

check: $(STAMP)
	$(VENV)/bin/llmcore-tui check

smoke: $(STAMP)
	$(VENV)/bin/llmcore-tui smoke

bench: $(STAMP)
	$(PY) benchmarks/startup.py

# every lab's toy over seeds 0-2 x torch threads 1-2: per claim, the worst value and its margin
# (report in output/robust/); LABS=dpo,gae limits it to some labs
robust: $(STAMP)
	$(PY) benchmarks/robust.py $(if $(LABS),--labs $(LABS))

# the UI's translations: extract the strings, merge them into each catalog, compile (README: In Chinese)
i18n: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg --no-location --sort-output --project llmcore-tui -o llmcore_tui/locale/messages.pot .
	$(VENV)/bin/pybabel update -i llmcore_tui/locale/messages.pot -d llmcore_tui/locale -D llmcore --ignore-obsolete --no-fuzzy-matching
	$(VENV)/bin/pybabel compile -d llmcore_tui/locale -D llmcore

clean:
	rm -rf $(VENV) output .pytest_cache
