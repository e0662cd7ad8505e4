# The two commands of the README. Both install what they need (scripts/bootstrap.sh) first.
.PHONY: demo test bootstrap lint

bootstrap:
	@bash scripts/bootstrap.sh

# The demo (examples/demo.py): the directory on its embedded defaults (./wot-directory.db, port 8081),
# three agents on HTTP, WebSocket and MQTT registered in it, and a router asking the right one.
demo: bootstrap
	.venv/bin/python examples/demo.py

# pytest exits 5 when it collected no test: that is a failure here, and make fails on any non-zero.
test: bootstrap
	.venv/bin/python -m pytest -q $(PYTEST_ARGS)

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports
