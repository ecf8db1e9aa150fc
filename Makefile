# featureplane: two commands on a fresh machine.
#   make demo   set up, generate data, apply, backfill through Dagster, serve and query, print a training set
#   make team-demo  the same platform shared by a team: PostgreSQL, the account server, users and roles
#   make test   set up and run the test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export DO_NOT_TRACK := 1

.PHONY: setup system-packages demo team-demo test lint ui serve clean

# Test servers from npm (dynalite: DynamoDB; kinesalite: Kinesis, with resharding), pinned by tests/servers/package-lock.json.
TEST_SERVERS := tests/servers/node_modules/.package-lock.json

DBT_FILES := $(shell find dbt -path dbt/target -prune -o -path dbt/logs -prune -o -type f \( -name '*.sql' -o -name '*.yml' \) -print)

setup: $(STAMP) $(DAGSTER_HOME)/dagster.yaml dbt/target/manifest.json

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing featureplane and its dependencies into $(VENV) (a few minutes the first time)..."
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@# Snowpark installs a legacy namespace hook that puts a `snowflake` module into every interpreter at
	@# start-up, lookup servers included; without it `snowflake` is an ordinary (PEP 420) namespace
	@# package that loads only where Snowflake code is imported.
	@rm -f $(VENV)/lib/python3*/site-packages/snowflake_*-nspkg.pth
	@touch $(STAMP)

$(TEST_SERVERS): tests/servers/package.json tests/servers/package-lock.json
	@echo "Installing the test servers (dynalite, kinesalite) with npm ci..."
	@cd tests/servers && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The instance's storage is created here, once: `dagster dev` starts its webserver and daemon at the same
# time, and two processes creating a fresh SQLite instance together can both stamp its schema version.
$(DAGSTER_HOME)/dagster.yaml: scripts/dagster.yaml | $(STAMP)
	@mkdir -p $(DAGSTER_HOME)
	@cp scripts/dagster.yaml $@
	@$(BIN)/dagster instance migrate > /dev/null

# Parse the dbt project once, so the first plan or code-location load does not wait for `dbt parse`;
# featureplane re-parses it by itself whenever a file of the project changes.
dbt/target/manifest.json: $(STAMP) $(DBT_FILES)
	@$(BIN)/python -m featureplane.dbt --config feature_repo
	@touch $@

demo: setup
	@$(BIN)/python scripts/demo.py

# The team set-up on one machine: PostgreSQL, `featureplane server` and a lookup service (docs/team.md).
team-demo: setup system-packages
	@$(BIN)/python scripts/team_demo.py

# PostgreSQL's server and Chromium, with apt-get when missing (the tests start their own servers).
system-packages:
	@scripts/system_packages.sh

test: setup system-packages $(TEST_SERVERS)
	@$(BIN)/python -m pytest

lint: setup
	@$(BIN)/ruff check .

ui: setup
	@$(BIN)/dagster dev -w workspace.yaml

serve: setup
	@$(BIN)/featureplane serve --config feature_repo

clean:
	rm -rf $(VENV) .dagster .team-demo feature_repo/.featureplane tests/servers/node_modules build dbt/target dbt/logs
