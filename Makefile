# The commands a new user needs (see README.md):
#   make run    the whole cloud on this machine, in the foreground
#   make test   the whole test suite
#   make test-fast   the unit tests and the fast tier (the portal in process), under a minute
#   make scale  what 10 and 100 simulated nodes with 1,000 and 10,000 instances cost (long)
#   make test-lab    only the lab: sfcloud-deploy onto SSH hosts in namespaces (tests/lab)
#   make soak   the stress suites' long versions (chaos, outages, races, fuzzing): about an hour
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test test-fast test-lab lab-deps soak deps test-deps lint bench scale clean-test settings-check

run: deps
	$(PYTHON) -m deploy.allinone

# Lint first: a ruff finding fails the suite (and CI, which runs `make test`).
# The in-process tiers (unit, fast, the stress suites among them) run on two
# workers; then what drives real guests, daemons and browsers runs in one
# process, as its tests share this machine's libvirtd, and beside it the
# several-machine lab (tests/lab), which shares nothing with it.
test: lab-deps
	$(VENV)/bin/ruff check .
	$(PYTHON) -m pytest tests/unit tests/fast -m "not integration and not e2e" -n 2 $(PYTEST_ARGS)
	./tests/integration-and-lab.sh $(PYTHON) $(PYTEST_ARGS)

# Several machines, alone (make test runs it too): sfcloud-deploy brings up 3
# hosts (network namespaces with their own sshd and file systems) and lives
# through failures, an upgrade, a backup and a restore, and two portals over
# PostgreSQL and Redis. As root.
test-lab: lab-deps
	$(PYTHON) -m pytest tests/lab -m lab -s -v $(PYTEST_ARGS)

lab-deps:
	@./deploy/install.sh --lab

# No libvirt, no agent, no guest: unit tests, and the portal's pages, API and
# websockets in process over a real etcd (tests/fast), without the stress
# suites (races, fuzzing, floods), on two workers (pytest-xdist: each its own etcd
# and test database). `make test` runs them too, with the stress suites.
test-fast: test-deps
	$(VENV)/bin/ruff check .
	$(PYTHON) -m pytest tests/unit tests/fast -m "not integration and not e2e and not stress" \
		-n 2 $(PYTEST_ARGS)

# The stress suites (marked `stress`) at length: the agent chaos test with 400
# operations, etcd gone 3 minutes, 20 rounds of each API race, 200 fuzzing
# requests per route. Their figures go to var/evidence/*.jsonl.
SOAK_ENV = SFCLOUD_SOAK=yes SFCLOUD_CHAOS_OPERATIONS=400 SFCLOUD_STRESS_ROUNDS=20 \
	SFCLOUD_FUZZ_EXAMPLES=200 SFCLOUD_EVIDENCE_DIR=var/evidence
soak: test-deps
	$(SOAK_ENV) $(PYTHON) -m pytest -m stress --timeout 3600 $(PYTEST_ARGS)

deps: settings-check
	@./deploy/install.sh

# Before anything is installed, a bad SFCLOUD_ setting stops `make run` here. The
# check needs only the standard library, so the system's python3 runs it; a machine
# without one yet gets the same check from deploy/allinone.py once it is installed.
settings-check:
	@if command -v python3 >/dev/null; then python3 -m cloudstate.settings --check; fi

test-deps:
	@./deploy/install.sh --test

lint: test-deps
	$(VENV)/bin/ruff check .

bench: test-deps
	$(PYTHON) bench/create_latency.py
	$(PYTHON) bench/idle.py
	$(PYTHON) bench/auth_overhead.py
	$(PYTHON) bench/power_latency.py
	$(PYTHON) bench/ipam.py
	$(PYTHON) bench/console.py
	$(PYTHON) bench/instance_list.py

# Not part of `make test`: simulated nodes (libvirt's test driver) and many
# instances, 11 minutes on a quiet machine here (more under load). Smaller:
# make scale SCALE_RUNS="3:30".
SCALE_RUNS ?= 10:1000 100:10000
SCALE_ARGS ?=
scale: test-deps
	@for run in $(SCALE_RUNS); do \
		$(PYTHON) bench/scale.py --nodes $${run%%:*} --instances $${run##*:} $(SCALE_ARGS) || exit 1; \
	done
	$(PYTHON) -m pytest e2e/test_instance_list_scale.py --scale-instances 10000 $(PYTEST_ARGS)
