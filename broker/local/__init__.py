"""The whole broker on one machine: starting and stopping its processes, ``inference-broker
up`` and ``demo``, and the chaos harness that injects faults into a real local stack.

The top of the house: it may import every other package, and nothing imports it but the CLI,
the scripts and the tests."""
