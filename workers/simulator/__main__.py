"""``python -m workers.simulator --host H --port P``; all other knobs come from ``BROKER_SIM_*``."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from workers.simulator.app import serve
from workers.simulator.settings import SimulatorSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workers.simulator",
        description="Simulated OpenAI/Anthropic provider. Knobs: BROKER_SIM_* environment.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    try:
        settings = SimulatorSettings()
    except ValidationError as exc:
        print(f"invalid BROKER_SIM_* settings:\n{exc}", file=sys.stderr)
        return 2
    serve(settings, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
