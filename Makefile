# The two commands of the README. Both install what they need (scripts/bootstrap.sh) first.
.PHONY: demo test bootstrap lint

bootstrap:
	@bash scripts/bootstrap.sh

# The demo (examples/demo.py): the directory (./wot-directory.db, port 8081, explorer at /explorer),
# a private mosquitto, four agents on HTTP, WebSocket and MQTT (announced over mDNS, registered), and
# the runtime (port 8080, chat page at /chat) with LMOS channels and a 90/10 canary; Ctrl-C stops all.
demo: bootstrap
	.venv/bin/python examples/demo.py

# pytest exits 5 when it collected no test: that is a failure here, and make fails on any non-zero.
test: bootstrap
	.venv/bin/python -m pytest -q $(PYTEST_ARGS)

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports
