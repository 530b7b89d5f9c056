"""The harness of tests/integration for the real-client tests: the same stacks (CA,
alice's certificate and PKCS#12, recording upstream, running daemon), fixtures and
failure reports. The integration conftest is loaded under its own module name, because
this file is itself imported as `conftest`."""

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
_spec = importlib.util.spec_from_file_location("submitd_harness", _PATH)
harness = importlib.util.module_from_spec(_spec)
sys.modules["submitd_harness"] = harness
_spec.loader.exec_module(harness)

# Fixtures (stack, fresh_stack_factory, no_sanitizer_reports) and hooks (the daemon's
# log next to every failure, cleanup at the end of the session).
from submitd_harness import *  # noqa: E402,F401,F403
