"""The learned router: training, JSON round-trip, calibration, the training-data loader."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from schedulers.tiers import DEFAULT_ROUTER_PATH
from schedulers.tiers.data import TrainingDataError, TrainingRow, load_training_rows
from schedulers.tiers.features import (
    LEXICAL_FEATURES,
    FeatureSpec,
    lexical_features,
    local_embedder_or_reason,
)
from schedulers.tiers.fitting import CANDIDATES, select
from schedulers.tiers.learned import LearnedRouter, fit_from_features, train

needs_training = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None or importlib.util.find_spec("scipy") is None,
    reason="training and calibrating need scikit-learn and scipy: pip install '.[embeddings]'",
)


EMBEDDING_ONLY = [c for c in CANDIDATES if c.features == "embedding+lexical"]

ROUTING_DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "routing"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"


class FakeEmbedder:
    """Deterministic 8-dim unit vectors from a hash: exercises the embedding path quickly."""

    name = "fake-hash-8"
    dim = 8

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()[: self.dim]
            vector = np.frombuffer(digest, dtype=np.uint8).astype(np.float32) - 127.5
            rows.append(vector / np.linalg.norm(vector))
        return np.array(rows, dtype=np.float32)


def synthetic_rows(n: int = 300, seed: int = 0) -> list[TrainingRow]:
    """Word problems with many numbers are hard for the cheap tier; short questions are not."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        numbers = int(rng.integers(0, 12))
        text = (
            f"Question {chr(97 + i % 26)}: "
            + " ".join(f"then {int(rng.integers(2, 999))} more" for _ in range(numbers))
            + " how many are left?"
        )
        hard = rng.random() < 0.1 + 0.07 * numbers
        weak, strong = (not hard), bool(rng.random() < 0.9)
        rows.append(TrainingRow(text, weak or not strong, weak, strong, f"g{i % 10}"))
    return rows


@pytest.fixture(scope="module")
def lexical_router() -> LearnedRouter:
    return train(synthetic_rows(), use_embeddings=False)


def test_lexical_features_have_the_declared_columns() -> None:
    matrix = lexical_features(["What is 2+2?", "```python\nprint(1)\n```"])
    assert matrix.shape == (2, len(LEXICAL_FEATURES))
    assert matrix[1, LEXICAL_FEATURES.index("code_blocks")] == 1.0
    with pytest.raises(ValueError, match="unknown lexical features"):
        lexical_features(["x"], ["no_such_feature"])


@needs_training
def test_router_learns_the_synthetic_signal(lexical_router: LearnedRouter) -> None:
    easy, hard = lexical_router.scores(
        [
            "Question a: how many are left?",
            "Question b: " + " ".join(f"then {n} more" for n in range(100, 111)) + " how many?",
        ]
    )
    assert easy > hard
    score, strong = lexical_router.decide("Question c: how many are left?")
    assert 0.0 < score < 1.0 and isinstance(strong, bool)


@needs_training
def test_save_load_round_trip_gives_identical_scores(
    lexical_router: LearnedRouter, tmp_path: Path
) -> None:
    path = tmp_path / "router.json"
    lexical_router.save(path)
    data = json.loads(path.read_text())
    for key in ("version", "created", "training_data", "features", "model", "calibration"):
        assert key in data
    assert data["features"]["embedder"] is None
    loaded = LearnedRouter.load(path)
    prompts = [row.prompt for row in synthetic_rows(40, seed=1)]
    assert np.array_equal(loaded.scores(prompts), lexical_router.scores(prompts))
    assert loaded.version == lexical_router.version == data["version"]
    assert loaded.threshold == lexical_router.threshold


@needs_training
def test_tampered_file_is_refused(lexical_router: LearnedRouter, tmp_path: Path) -> None:
    data = lexical_router.to_dict()
    data["model"]["intercept"] += 1.0
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="does not match"):
        LearnedRouter.load(path)


@needs_training
@pytest.mark.parametrize("share", [0.1, 0.3, 0.5, 0.8])
def test_threshold_for_share_gives_about_that_share(
    lexical_router: LearnedRouter, share: float
) -> None:
    scores = lexical_router.scores([row.prompt for row in synthetic_rows()])
    threshold = lexical_router.threshold_for_strong_share(share)
    assert np.mean(scores < threshold) == pytest.approx(share, abs=0.03)


@needs_training
def test_threshold_for_quality_is_monotone(lexical_router: LearnedRouter) -> None:
    low = lexical_router.threshold_for_quality(0.85)
    high = lexical_router.threshold_for_quality(0.99)
    assert low <= high
    assert lexical_router.threshold_for_quality(0.0) == 0.0  # nothing needs the strong tier
    assert lexical_router.threshold_for_strong_share(1.0) == 1.0


@needs_training
def test_embedding_path_round_trips_with_a_given_embedder(tmp_path: Path) -> None:
    router = train(synthetic_rows(120), embedder=FakeEmbedder(), candidates=EMBEDDING_ONLY, folds=3)
    path = tmp_path / "router.json"
    router.save(path)
    loaded = LearnedRouter.load(path, embedder=FakeEmbedder())
    prompts = ["Question z: then 5 more how many are left?", "Question y: how many?"]
    assert np.array_equal(loaded.scores(prompts), router.scores(prompts))
    assert loaded.model.spec.embedder == "fake-hash-8"


def test_jsonl_loader_accepts_good_lines(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"prompt": "a", "acceptable": true}\n\n'
        '{"prompt": "b", "weak_correct": false, "strong_correct": true, "group": "maths"}\n'
    )
    loaded = load_training_rows(path)
    assert [(r.prompt, r.acceptable, r.group) for r in loaded.rows] == [
        ("a", True, None),
        ("b", False, "maths"),
    ]
    assert loaded.describe()["files"][0]["rows"] == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('["a", true]', "expected an object"),
        ('{"acceptable": true}', "'prompt' must be a non-empty string"),
        ('{"prompt": "a", "acceptable": "yes"}', "'acceptable' must be true or false"),
        ('{"prompt": "a"}', "missing 'acceptable'"),
        ('{"prompt": "a", "acceptable": true, "group": 3}', "'group' must be a non-empty"),
    ],
)
def test_jsonl_loader_names_the_bad_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "ok", "acceptable": true}\n' + line + "\n")
    with pytest.raises(TrainingDataError, match=rf"rows.jsonl:2: {message}"):
        load_training_rows(path)


def test_loader_reads_a_routing_directory(tmp_path: Path) -> None:
    (tmp_path / "mmlu").mkdir()
    (tmp_path / "mmlu" / "mmlu_toy.csv").write_text(
        f'prompt,{WEAK},{STRONG}\n"Q1\nA. x",True,True\nQ2,False,True\nQ3,False,False\n'
    )
    (tmp_path / "gsm8k_responses.csv").write_text(
        f"prompt,{WEAK},{STRONG},{WEAK}_response,{STRONG}_response\nG1,False,True,a,b\n"
    )
    loaded = load_training_rows(tmp_path)
    assert [(r.prompt, r.acceptable, r.group) for r in loaded.rows] == [
        ("Q1\nA. x", True, "mmlu:toy"),
        ("Q2", False, "mmlu:toy"),
        ("Q3", True, "mmlu:toy"),
        ("G1", False, "gsm8k:0"),
    ]
    assert {f["path"] for f in loaded.describe()["files"]} == {
        "mmlu/mmlu_toy.csv",
        "gsm8k_responses.csv",
    }


def test_loader_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="no such file"):
        load_training_rows(tmp_path / "missing.jsonl")
    with pytest.raises(TrainingDataError, match="no mmlu"):
        load_training_rows(tmp_path)
    (tmp_path / "mmlu").mkdir()
    (tmp_path / "mmlu" / "mmlu_bad.csv").write_text(f"prompt,{WEAK}\nQ,True\n")
    with pytest.raises(TrainingDataError, match="missing columns"):
        load_training_rows(tmp_path)


def test_default_router_is_shipped_and_described() -> None:
    data = json.loads(DEFAULT_ROUTER_PATH.read_text())
    assert data["format"] == "inference-broker/learned-router@1"
    assert data["training_data"]["rows"] > 1000
    assert all(len(f["sha256"]) == 64 for f in data["training_data"]["files"])
    assert DEFAULT_ROUTER_PATH.stat().st_size < 200_000


@pytest.fixture(scope="module")
def embedder():
    found, reason = local_embedder_or_reason()
    if found is None:
        pytest.skip(f"the local embedder is not installed: {reason}")
    return found


def test_real_slice_with_the_local_embedder(embedder, tmp_path: Path) -> None:
    if not ROUTING_DATA.is_dir():
        pytest.skip(f"routing data not found at {ROUTING_DATA}")
    rows = [
        r
        for r in load_training_rows(ROUTING_DATA).rows
        if r.group in {"mmlu:anatomy", "mmlu:college_mathematics", "mmlu:virology"}
    ]
    router = train(rows, embedder=embedder, candidates=EMBEDDING_ONLY)
    path = tmp_path / "router.json"
    router.save(path)
    loaded = LearnedRouter.load(path, embedder=embedder)
    prompts = [r.prompt for r in rows[:20]]
    assert np.array_equal(loaded.scores(prompts), router.scores(prompts))
    assert json.loads(path.read_text())["features"]["embedder"] == embedder.name
    # The default router loads with the local embedder and decides.
    score, _ = LearnedRouter.load(DEFAULT_ROUTER_PATH, embedder=embedder).decide(prompts[0])
    assert 0.0 < score < 1.0


def topic_traffic(topics: int = 10, per_topic: int = 40, seed: int = 0):
    """Rows whose topic alone decides whether the cheaper tier copes (every other topic is
    hard), with an embedding that tells the topics apart and lexical columns of noise."""
    rng = np.random.default_rng(seed)
    dim = 16
    centres = rng.normal(size=(topics, dim))
    rows, matrix = [], []
    for topic in range(topics):
        for i in range(per_topic):
            rows.append(
                TrainingRow(f"topic {topic} question {i}", topic % 2 == 0, group=f"t{topic}")
            )
            embedding = centres[topic] + 0.3 * rng.normal(size=dim)
            matrix.append(np.concatenate([embedding, rng.normal(size=len(LEXICAL_FEATURES))]))
    spec = FeatureSpec(embedder="fake-topics", embedding_dim=dim)
    return np.array(matrix), rows, spec


@needs_training
def test_holding_out_rows_learns_topics_and_holding_out_groups_says_they_do_not_transfer():
    features, rows, spec = topic_traffic()
    embedding = next(c.name for c in CANDIDATES if c.features == "embedding+lexical")
    _, _, by_rows, metric = select(features, rows, spec, hold_out="rows")
    _, _, by_groups, _ = select(features, rows, spec, hold_out="groups")
    assert metric == "roc_auc"
    assert by_rows[embedding] > 0.95  # a prompt of a topic it trained on: the topic is known
    assert by_groups[embedding] < 0.75  # a topic it never saw: nothing to go on
    router = fit_from_features(features, rows, spec, hold_out="groups")
    assert router.info["selection"]["grouped"] is True
    assert fit_from_features(features, rows, spec).info["selection"]["grouped"] is False
    with pytest.raises(ValueError, match="hold_out must be"):
        select(features, rows, spec, hold_out="subjects")  # type: ignore[arg-type]
