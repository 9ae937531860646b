"""``inference-broker router train`` and ``router show`` (lexical features: no model needed)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from click.testing import CliRunner

from broker.cli import main
from schedulers.tiers.learned import LearnedRouter

needs_training = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None or importlib.util.find_spec("scipy") is None,
    reason="training and calibrating need scikit-learn and scipy: pip install '.[embeddings]'",
)


@needs_training
def test_train_writes_a_versioned_router_calibrated_as_asked(tmp_path):
    lines = []
    for i in range(120):
        hard = i % 3 == 0
        prompt = (
            f"Prove that the sequence {i} converges and derive its limit step by step"
            if hard
            else f"What is the capital of country number {i}?"
        )
        lines.append(json.dumps({"prompt": prompt, "acceptable": not hard}))
    source = tmp_path / "traffic.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "router.json"
    result = CliRunner().invoke(
        main,
        [
            "router",
            "train",
            str(source),
            "--out",
            str(out),
            "--lexical-only",
            "--strong-share",
            "0.4",
        ],
    )
    assert result.exit_code == 0, result.output
    router = LearnedRouter.load(out)
    assert router.version.startswith("sha256:") and router.version in result.output
    shares = [router.decide(json.loads(line)["prompt"])[1] for line in lines]
    assert 0.25 <= sum(shares) / len(shares) <= 0.55  # about the share asked for
    shown = CliRunner().invoke(main, ["router", "show", str(out)])
    assert shown.exit_code == 0 and "lexical" in shown.output


def test_a_bad_training_line_is_named(tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"prompt": "fine", "acceptable": true}\n{"prompt": 3}\n')
    result = CliRunner().invoke(main, ["router", "train", str(source), "--lexical-only"])
    assert result.exit_code == 1
    assert "bad.jsonl" in result.output and "2" in result.output


@needs_training
def test_holding_out_groups_needs_a_group_on_every_line(tmp_path):
    lines = [
        {
            "prompt": f"Question {i} about topic {i % 4}",
            "acceptable": i % 4 != 0,
            "group": f"t{i % 4}",
        }
        for i in range(40)
    ]
    source = tmp_path / "traffic.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "router.json"
    args = ["router", "train", str(source), "--out", str(out), "--lexical-only"]
    result = CliRunner().invoke(main, [*args, "--hold-out", "groups"])
    assert result.exit_code == 0, result.output
    assert "held-out whole groups" in " ".join(result.output.split())  # rich wraps lines
    assert LearnedRouter.load(out).info["selection"]["grouped"] is True

    del lines[7]["group"]
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = CliRunner().invoke(main, [*args, "--hold-out", "groups"])
    assert result.exit_code == 1
    assert "1 of 40 have none" in " ".join(result.output.split())
