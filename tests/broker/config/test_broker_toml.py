"""``broker.toml``: the packaged default, the real-provider example, and every way a file can be
wrong, each failing with the file, the key and the reason."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from broker.config.broker_toml import DEFAULT_CONFIG, ProviderKind, load_config, parse_config
from broker.config.settings import Settings
from broker.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
REAL_EXAMPLE = REPO / "examples" / "broker.real.toml"

# List prices from WIRE_FORMATS.md, USD per 1M tokens: input, output, cached input.
PRICES = {
    "gpt-4o": ("2.50", "10.00", "1.25"),
    "gpt-4o-mini": ("0.15", "0.60", "0.075"),
    "gpt-4.1": ("2.00", "8.00", "0.50"),
    "gpt-4.1-mini": ("0.40", "1.60", "0.10"),
    "gpt-4.1-nano": ("0.10", "0.40", "0.025"),
    "claude-sonnet-4-5": ("3.00", "15.00", "0.30"),
    "claude-haiku-4-5": ("1.00", "5.00", "0.10"),
    "gemini-2.5-flash": ("0.30", "2.50", "0.03"),
    "text-embedding-3-small": ("0.02", "0", "0"),  # an embedding model: input tokens only
}


def prices(config, model: str) -> tuple[Decimal, Decimal, Decimal]:
    m = config.model(model)
    return m.input_price, m.output_price, m.cached_input_price


def test_the_packaged_default_loads_with_list_prices():
    config = load_config()
    assert config == load_config(DEFAULT_CONFIG)
    assert len(config.models) == 9
    assert config.model_names("embedding") == ["text-embedding-3-small"]
    assert "text-embedding-3-small" not in config.model_names("chat")
    assert config.model_names() == sorted(PRICES)
    for name, (inp, out, cached) in PRICES.items():
        assert prices(config, name) == (Decimal(inp), Decimal(out), Decimal(cached)), name
    assert prices(config, "gpt-4o-mini") == (Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))
    assert prices(config, "claude-haiku-4-5") == (Decimal("1.00"), Decimal("5.00"), Decimal("0.10"))
    for model in config.models:
        assert config.provider_for_model(model.name) is config.provider(model.provider)
    assert {p.name for p in config.providers} == {"sim-openai", "sim-anthropic"}
    assert config.provider("sim-anthropic").wire_format == "anthropic"
    assert sorted(t.id for t in config.teams) == ["content", "platform", "product"]
    assert config.team_by_key_hash(config.team("platform").api_key_sha256).id == "platform"


def test_the_real_provider_example_loads():
    config = load_config(REAL_EXAMPLE)
    assert [p.kind for p in config.providers] == [ProviderKind.OPENAI, ProviderKind.ANTHROPIC]
    assert [p.api_key_env for p in config.providers] == ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]
    for model in config.models:
        assert prices(config, model.name) == tuple(Decimal(p) for p in PRICES[model.name])
        assert (
            config.provider_for_model(model.name).wire_format
            == config.provider(model.provider).kind.value
        )
    assert config.teams == []


def edit(source: Path, old: str, new: str, count: int = 1) -> str:
    text = source.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {source.name}: the test needs updating"
    return text.replace(old, new, count)


DEFAULT_TEXT = DEFAULT_CONFIG.read_text(encoding="utf-8")

# (id, file text or None for a missing file, key, words of the reason)
BROKEN = [
    ("toml-syntax", DEFAULT_TEXT + "\n[[models]\nname = ", "(syntax)", "at line"),
    ("missing-file", None, "(file)", "no such file"),
    (
        "unknown-provider",
        edit(DEFAULT_CONFIG, 'provider = "sim-anthropic"', 'provider = "sim-gemini"'),
        "models[7].provider",
        "unknown provider 'sim-gemini' (known: sim-anthropic, sim-openai)",
    ),
    (
        "negative-price",
        edit(DEFAULT_CONFIG, 'cached_input_price = "0.075"', 'cached_input_price = "-0.075"'),
        "models[1].cached_input_price",
        "greater than or equal to 0",
    ),
    # A model without a price is never routed to: it cannot even be configured.
    (
        "model-without-a-price",
        edit(DEFAULT_CONFIG, 'output_price = "0.60"\n', ""),
        "models[1].output_price",
        "Field required",
    ),
    (
        "budget-for-unknown-team",
        DEFAULT_TEXT + '\n[[budgets]]\nteam = "nobody"\nlimit_usd = "1"\n',
        "budgets[0].team",
        "unknown team 'nobody'",
    ),
    (
        "custom-window-without-period",
        DEFAULT_TEXT + '\n[[budgets]]\nteam = "product"\nwindow = "custom"\nlimit_usd = "1"\n',
        "budgets[0]",
        "start and period_hours go together",
    ),
    (
        "fallback-to-unknown-model",
        edit(
            DEFAULT_CONFIG, 'fallbacks = ["claude-haiku-4-5", "gpt-4.1-nano"]', 'fallbacks = ["x"]'
        ),
        "models[1].fallbacks[0]",
        "'x' is not another model in the catalog",
    ),
    (
        "chat-model-without-max-output",
        edit(DEFAULT_CONFIG, "max_output = 16384\ntier = \"large\"", 'tier = "large"'),
        "models[0]",
        "max_output: required for a chat model",
    ),
    (
        "embedding-model-falling-back-to-a-chat-model",
        edit(
            DEFAULT_CONFIG, 'kind = "embedding"\n', 'kind = "embedding"\nfallbacks = ["gpt-4o"]\n'
        ),
        "models[6].fallbacks[0]",
        "'gpt-4o' serves chat requests, 'text-embedding-3-small' embedding ones",
    ),
    (
        "embedding-model-on-an-anthropic-wire",
        edit(
            DEFAULT_CONFIG,
            'kind = "embedding"\nprovider = "sim-openai"',
            'kind = "embedding"\nprovider = "sim-anthropic"',
        ),
        "models[6].kind",
        "embedding models need a provider speaking the openai wire format",
    ),
    (
        "route-tier-that-embeds",
        edit(
            DEFAULT_CONFIG,
            'tiers = ["gpt-4o-mini", "gpt-4o"]',
            'tiers = ["gpt-4o-mini", "text-embedding-3-small"]',
        ),
        "routes[0].tiers[1]",
        "'text-embedding-3-small' is not a chat model",
    ),
    (
        "wrong-type",
        edit(DEFAULT_CONFIG, "concurrency = 64", 'concurrency = "lots"'),
        "providers[0].concurrency",
        "valid integer",
    ),
    (
        "unknown-key",
        edit(DEFAULT_CONFIG, 'tier = "small"', 'tier = "small"\ncolour = "blue"'),
        "models[1].colour",
        "Extra inputs are not permitted",
    ),
    (
        "unknown-top-level-key",
        "region = 'eu'\n" + DEFAULT_TEXT,
        "region",
        "Extra inputs are not permitted",
    ),
    (
        "duplicate-model",
        edit(DEFAULT_CONFIG, 'name = "gpt-4.1-nano"', 'name = "gpt-4o"'),
        "models[4].name",
        "duplicate name 'gpt-4o'",
    ),
    (
        "simulated-without-wire",
        edit(DEFAULT_CONFIG, 'wire = "anthropic"\n', ""),
        "providers[1].wire",
        "a simulated provider needs wire",
    ),
    (
        "real-without-api-key-env",
        edit(REAL_EXAMPLE, 'api_key_env = "ANTHROPIC_API_KEY"\n', ""),
        "providers[1].api_key_env",
        "a real provider needs api_key_env",
    ),
    (
        "bad-base-url",
        edit(DEFAULT_CONFIG, 'base_url = "http://127.0.0.1:8765"', 'base_url = "127.0.0.1:8765"'),
        "providers[0].base_url",
        "must start with http:// or https://",
    ),
    (
        "short-team-key-hash",
        edit(DEFAULT_CONFIG, '"1010b38ce004432e', '"'),
        "teams[2].api_key_sha256",
        "should match pattern",
    ),
    (
        "uppercase-team-key-hash",
        edit(DEFAULT_CONFIG, "1010b38ce004432e", "1010B38CE004432E"),
        "teams[2].api_key_sha256",
        "should match pattern",
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "reason"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_a_broken_file_names_the_file_the_key_and_the_reason(tmp_path, text, key, reason):
    path = tmp_path / "broker.toml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert (error.source, error.key) == (str(path), key)
    assert reason in error.reason
    assert str(error) == f"{path}: {key}: {error.reason}"


def minimal(**over) -> dict:
    data = {
        "prices_as_of": "2026-11-01",
        "providers": [{"name": "p", "kind": "simulated", "wire": "openai", "base_url": "http://x"}],
        "models": [
            {
                "name": "m",
                "provider": "p",
                "provider_model_id": "m",
                "input_price": "1",
                "output_price": "2",
                "cached_input_price": "0.5",
                "context_window": 10,
                "max_output": 5,
            }
        ],
        "teams": [team("t", "a")],
    }
    data.update(over)
    return data


def team(team_id: str, hex_digit: str, length: int = 64, **over) -> dict:
    return {"id": team_id, "api_key_sha256": hex_digit * length, **over}


@pytest.mark.parametrize(
    ("over", "key", "reason"),
    [
        ({"providers": []}, "providers", "at least 1"),
        ({"prices_as_of": "yesterday"}, "prices_as_of", "valid date"),
        ({"teams": [team("t", "a"), team("t", "b")]}, "teams[1].id", "duplicate id 't'"),
        (
            {"teams": [team("t", "a"), team("u", "a")]},
            "teams[1].api_key_sha256",
            "duplicate api_key_sha256",
        ),
        ({"teams": [team("t", "g")]}, "teams[0].api_key_sha256", "pattern"),
        ({"teams": [team("t", "a", length=65)]}, "teams[0].api_key_sha256", "pattern"),
        (
            {"teams": [team("t", "a", weight=0)]},
            "teams[0].weight",
            "greater than or equal to 0.001",
        ),
        (
            {"teams": [team("t", "a"), team("u", "b")], "admin_api_key_sha256": "b" * 64},
            "admin_api_key_sha256",
            "is also teams[1].api_key_sha256 (team 'u')",
        ),
        ({"admin_api_key_sha256": "B" * 64}, "admin_api_key_sha256", "pattern"),
        (
            {"teams": [team("t", "a")], "metrics_api_key_sha256": "a" * 64},
            "metrics_api_key_sha256",
            "is also teams[0].api_key_sha256 (team 't'); the metrics key must differ",
        ),
    ],
    ids=[
        "no-providers",
        "bad-date",
        "duplicate-team",
        "duplicate-key-hash",
        "non-hex-hash",
        "long-hash",
        "zero-weight",
        "admin-key-is-a-team-key",
        "uppercase-admin-key-hash",
        "metrics-key-is-a-team-key",
    ],
)
def test_parse_config_refuses_bad_dicts(over, key, reason):
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(**over), "inline.toml")
    assert str(info.value).startswith(f"inline.toml: {key}: ")
    assert reason in info.value.reason


def test_a_minimal_dict_parses_and_strips_the_base_url_slash():
    config = parse_config(
        minimal(
            providers=[
                {"name": "p", "kind": "simulated", "wire": "anthropic", "base_url": "https://x/"}
            ]
        )
    )
    assert config.provider("p").base_url == "https://x"
    assert config.provider("p").queue == "provider.p"
    assert config.model("m").input_price == Decimal(1)


def test_simulator_url_repoints_every_simulated_provider_and_nothing_else(tmp_path):
    real = (
        '\n[[providers]]\nname = "openai"\nkind = "openai"\nbase_url = "https://api.openai.com"\n'
        'api_key_env = "OPENAI_API_KEY"\n'
    )
    path = tmp_path / "broker.toml"
    path.write_text(edit(DEFAULT_CONFIG, "\n[[models]]", real + "\n[[models]]"), encoding="utf-8")

    plain = Settings(config_path=path, simulator_url=None).config
    moved = Settings(config_path=path, simulator_url="http://10.0.0.7:9999/").config

    assert [p.name for p in moved.providers] == ["sim-openai", "sim-anthropic", "openai"]
    for provider in moved.providers:
        if provider.kind is ProviderKind.SIMULATED:
            assert provider.base_url == "http://10.0.0.7:9999"
        else:
            assert provider.base_url == "https://api.openai.com"
    without_urls = {"providers": {"__all__": {"base_url"}}}
    assert moved.model_dump(exclude=without_urls) == plain.model_dump(exclude=without_urls)
    assert moved.provider("sim-anthropic").wire_format == "anthropic"
    assert moved.provider_for_model("gpt-4o-mini").base_url == "http://10.0.0.7:9999"
    assert moved.team("product") == plain.team("product")


def test_settings_without_simulator_url_use_the_file_as_is():
    config = Settings(config_path=None, simulator_url=None).config
    assert config == load_config()
    assert {p.base_url for p in config.providers} == {"http://127.0.0.1:8765"}


def test_an_empty_environment_variable_counts_as_unset(monkeypatch):
    """docker-compose passes ``${VAR:-}`` through as an empty string."""
    from broker.config.settings import Settings

    monkeypatch.setenv("BROKER_TASK_EVENTS", "")
    monkeypatch.setenv("BROKER_FLOWER_BASIC_AUTH", "")
    settings = Settings()
    assert settings.task_events is None and settings.flower_basic_auth is None
