"""``inference-broker router``: train the learned tier router on your own labelled traffic,
calibrate it to what you ask for, and show what a stored router is."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click

from broker.cli.admin_commands import console
from schedulers.tiers import DEFAULT_ROUTER_PATH
from schedulers.tiers.data import load_training_rows
from schedulers.tiers.learned import LearnedRouter, train


def _describe(router: LearnedRouter, path: Path) -> None:
    spec = router.model.spec.to_dict()
    data = router.info.get("training_data", {})
    embedding = spec["embedder"] if spec.get("embedding_dim") else "none (lexical only)"
    console.print(f"router {router.version} ({path})")
    console.print(
        f"  trained on {data.get('rows', '?'):,} rows from {len(data.get('files', []))} files"
    )
    console.print(f"  features: {len(spec['lexical'])} lexical, embedding: {embedding}")
    selection = router.info.get("selection", {})
    if selection:
        held_out = "whole groups" if selection.get("grouped") else "rows"
        console.print(
            f"  model: {selection.get('chosen')}, chosen by {selection.get('metric')} "
            f"on held-out {held_out}"
        )
    console.print(
        f"  threshold {router.threshold:.4f}: "
        f"{_share_at(router, router.threshold):.0%} of the training traffic to the strong tier"
    )


def _share_at(router: LearnedRouter, threshold: float) -> float:
    rows = sorted(router.calibration, key=lambda r: r["threshold"])
    best = rows[0]["strong_share"] if rows else 0.0
    for row in rows:
        if row["threshold"] <= threshold:
            best = row["strong_share"]
    return float(best)


def register(main: click.Group) -> None:
    @main.group()
    def router() -> None:
        """The learned tier router: train, calibrate, show."""

    @router.command("train")
    @click.argument("source", type=click.Path(exists=True, path_type=Path))
    @click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=Path("router.json"),
        show_default=True,
        help="Where to write the trained router (JSON, with its version and training data).",
    )
    @click.option(
        "--strong-share",
        type=click.FloatRange(0, 1),
        help="Calibrate: this share of calls to the strong tier.",
    )
    @click.option(
        "--quality",
        type=click.FloatRange(0, 1),
        help="Calibrate: this fraction of strong-only quality (default 0.95).",
    )
    @click.option(
        "--lexical-only",
        is_flag=True,
        help="No embedding features, even when the embedder is installed.",
    )
    @click.option(
        "--hold-out",
        type=click.Choice(["rows", "groups"]),
        default="rows",
        show_default=True,
        help="What choosing the model validates on: prompts it did not train on (a router for "
        "traffic like SOURCE), or whole groups, such as an MMLU subject (a router for topics "
        "SOURCE does not have; the shipped one).",
    )
    def train_command(
        source: Path,
        out: Path,
        strong_share: float | None,
        quality: float | None,
        lexical_only: bool,
        hold_out: Literal["rows", "groups"],
    ) -> None:
        """Train on SOURCE: JSON lines of {"prompt": ..., "acceptable": true|false} (was the
        cheaper tier's answer acceptable), or a directory in the layout of
        ../shared/data/routing."""
        if strong_share is not None and quality is not None:
            raise click.UsageError("calibrate to --strong-share or to --quality, not both")
        try:
            rows = load_training_rows(source)
        except ValueError as exc:  # names the file and line to fix
            raise click.ClickException(str(exc)) from exc
        try:
            trained = train(rows, use_embeddings=not lexical_only, hold_out=hold_out)
        except ValueError as exc:  # too few rows, or groups asked for and missing
            raise click.ClickException(str(exc)) from exc
        if strong_share is not None:
            trained = trained.with_threshold(trained.threshold_for_strong_share(strong_share))
        elif quality is not None:
            trained = trained.with_threshold(trained.threshold_for_quality(quality))
        trained.save(out)
        _describe(trained, out)

    @router.command("show")
    @click.argument("path", type=click.Path(exists=True, path_type=Path), required=False)
    def show(path: Path | None) -> None:
        """What a stored router is (default: the shipped one)."""
        path = path or DEFAULT_ROUTER_PATH
        _describe(LearnedRouter.load(path), path)
