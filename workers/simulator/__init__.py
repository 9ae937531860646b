"""A simulated LLM provider speaking the OpenAI and Anthropic wire formats on one port.

Deterministic answers, real HTTP, and knobs for latency, errors, rate limits, outages and broken
bodies, so the broker can be tested and benchmarked without a real provider::

    from workers.simulator import SimulatorSettings, serve
    serve(SimulatorSettings(rpm=60), host="127.0.0.1", port=8765)
"""

from workers.simulator.app import create_app, serve
from workers.simulator.settings import MalformedKind, OutageWindow, SimulatorSettings, Wire

__all__ = ["MalformedKind", "OutageWindow", "SimulatorSettings", "Wire", "create_app", "serve"]
