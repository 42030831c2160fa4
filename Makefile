# Entry points. `make demo` and `make test` are the README's two commands; both
# install what they need (scripts/bootstrap.sh) before doing anything else.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV      ?= $(CURDIR)/.venv
STAMP     := $(VENV)/.bootstrap-stamp
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
# The lab's default name; helpers and CI may run their own with POOL_LAB_NAME=...
export POOL_LAB_NAME ?= lab

.PHONY: help bootstrap demo lab-ssh test unit kmod sanity lint docs ee molecule bench lab-image lab-up lab-down collection clean \
	debug-kernel test-debug soak vagrant-box test-vagrant

help:
	@echo "make demo   - bootstrap, boot the three-VM lab, run playbooks/site.yml against it"
	@echo "make test   - bootstrap, then every test: unit, kmod builds, sanity, lint, docs, molecule (one shared lab)"
	@echo "make bench  - benchmarks in the lab (figures and ratios against a same-run baseline)"
	@echo "make lab-up / lab-down - boot or destroy the lab alone"
	@echo "make lab-ssh NODE=node1 - a root shell on a lab node"
	@echo "make debug-kernel - build Debian 12's kernel with KASAN, lockdep, kmemleak (once, cached)"
	@echo "make test-debug - the transport tests on a lab running that kernel"
	@echo "make soak   - one session of 16 GiB across the ring counters' wrap, then 30 min of rekeys"
	@echo "make vagrant-box - the lab's images as libvirt Vagrant boxes in the local Vagrant (pool-lab/RELEASE)"
	@echo "make test-vagrant - the default scenario's rollout and verification on a Vagrant lab (molecule/vagrant)"

$(STAMP): requirements.txt scripts/bootstrap.sh
	scripts/bootstrap.sh
	touch $@

bootstrap: $(STAMP)

# The collection must live at ansible_collections/pool/ops for ansible-galaxy,
# ansible-test and FQCN resolution; scripts/link-collection.sh keeps a copy there.
collection: bootstrap
	scripts/link-collection.sh

demo: bootstrap collection
	python3 molecule/lab/pool_lab.py up
	ansible-playbook -i inventories/lab playbooks/site.yml
	scripts/demo-summary.sh

lab-ssh: bootstrap
	python3 molecule/lab/pool_lab.py ssh $(or $(NODE),node1)

lab-image: bootstrap
	python3 molecule/lab/pool_lab.py image

lab-up: bootstrap
	python3 molecule/lab/pool_lab.py up

lab-down:
	python3 molecule/lab/pool_lab.py down

# The lab stage (molecule) runs in the background while the host stages run (scripts/test.sh).
test: bootstrap collection
	scripts/test.sh

unit: bootstrap
	python3 -m pytest -q tests/unit

kmod: bootstrap
	scripts/build-kmod.sh

sanity: bootstrap collection
	scripts/sanity.sh

lint: bootstrap collection
	ruff check .
	ansible-lint --profile production

docs: bootstrap collection
	scripts/docs.sh

# The execution environment's build context (.cache/ee-context); `scripts/ee.sh build TAG` builds
# the image where podman or docker can pull its base image.
ee: docs

molecule: bootstrap collection
	scripts/molecule-all.sh

bench: bootstrap collection
	scripts/bench.sh

debug-kernel: bootstrap
	scripts/build-debug-kernel.sh

test-debug: bootstrap collection
	scripts/test-debug.sh

soak: bootstrap collection
	scripts/soak.sh

vagrant-box: bootstrap
	scripts/test-vagrant.sh --box-only

test-vagrant: bootstrap collection
	scripts/test-vagrant.sh

clean:
	rm -rf .cache build dist .pytest_cache .ruff_cache
	$(MAKE) -C kmod clean || true
