"""The command-line flags both clients share for a take's noise (retake) and its finishing (loudness,
fades, latent shift), each defined once with the request field it fills."""

from __future__ import annotations

import argparse
import typing

from ..schema.request import GenerationRequest

Parser = argparse.ArgumentParser | argparse._ArgumentGroup


def choices_of(field: str) -> list[str]:
    """The values a request field of a Literal type takes, as the schema defines them."""
    return list(typing.get_args(GenerationRequest.model_fields[field].annotation))


def add_retake_arguments(p: Parser) -> None:
    p.add_argument("--retake-seed", help="a second seed whose noise is blended in (needs --retake-variance; "
                   "a comma list: one per song)")
    p.add_argument("--retake-variance", type=float, help="0-1: how much of the retake seed's noise "
                   "(0: the song itself, 1: the retake seed's song)")


def add_finishing_arguments(p: Parser) -> None:
    p.add_argument("--no-normalize", dest="normalize", action="store_false",
                   help="leave each song's level as decoded (default: peak-normalise, as upstream)")
    p.add_argument("--normalization-db", type=float, help="peak level of each song in dBFS, -60 to 0 (default -1)")
    p.add_argument("--fade-in", type=float, help="linear fade-in, seconds (default 0: none)")
    p.add_argument("--fade-out", type=float, help="linear fade-out, seconds (default 0: none)")
    p.add_argument("--latent-shift", type=float, help="added to the latents before decoding (default 0)")
    p.add_argument("--latent-rescale", type=float, help="multiplies the latents before decoding (default 1)")


def retake_fields(args: argparse.Namespace) -> dict:
    return given({"retake_seed": args.retake_seed, "retake_variance": args.retake_variance})


def finishing_fields(args: argparse.Namespace) -> dict:
    return given({"enable_normalization": None if args.normalize else False,
                   "normalization_db": args.normalization_db, "fade_in_duration": args.fade_in,
                   "fade_out_duration": args.fade_out, "latent_shift": args.latent_shift,
                   "latent_rescale": args.latent_rescale})


def given(fields: dict) -> dict:
    """The fields a flag set (None: the flag was not given, so the field takes its default)."""
    return {k: v for k, v in fields.items() if v is not None}
