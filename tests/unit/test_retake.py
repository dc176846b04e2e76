"""Retake: the fields, how their seeds are resolved, and the starting noise they blend (no model)."""

import importlib.util
import math

import pytest
import torch

from acestep_worker.doors import cli, client
from acestep_worker.errors import InputError
from acestep_worker.pipeline.initial_noise import Retake, draw_noise, initial_noise, retake_blend
from acestep_worker.pipeline.seeds import draw_retake_seeds
from acestep_worker.schema.request import parse
from acestep_worker.schema.task_types import replaced_fields

from ..support.repo import REPO


def _own_noise(seeds, frames=17, channels=8):
    return draw_noise([torch.Generator("cpu").manual_seed(s) for s in seeds], frames, channels)


def test_no_retake_and_variance_zero_start_from_exactly_the_songs_own_noise():
    own = _own_noise([3, 4])
    assert torch.equal(initial_noise([3, 4], 17, 8)[0], own)
    assert torch.equal(initial_noise([3, 4], 17, 8, Retake((9, 10), 0.0))[0], own)


def test_the_blend_is_cos_and_sin_of_a_quarter_turn_times_the_variance():
    own, other = _own_noise([3]), _own_noise([9])
    noise = initial_noise([3], 17, 8, Retake((9,), 0.4))[0]
    assert torch.equal(noise, math.cos(0.4 * math.pi / 2) * own + math.sin(0.4 * math.pi / 2) * other)
    assert torch.equal(retake_blend(own, other, 1.0), other)  # cos(pi/2) * own is far below other's rounding
    assert not torch.equal(noise, own) and not torch.equal(noise, other)


def test_same_seeds_same_noise_and_another_retake_seed_other_noise():
    a = initial_noise([3, 4], 17, 8, Retake((9, 10), 0.3))[0]
    assert torch.equal(a, initial_noise([3, 4], 17, 8, Retake((9, 10), 0.3))[0])
    assert not torch.equal(a, initial_noise([3, 4], 17, 8, Retake((9, 11), 0.3))[0])
    assert torch.equal(a[0], initial_noise([3], 17, 8, Retake((9,), 0.3))[0][0])  # an item reproduces alone


def test_a_retake_needs_one_seed_per_song():
    with pytest.raises(ValueError, match="1 retake seeds for 2 songs"):
        initial_noise([3, 4], 17, 8, Retake((9,), 0.3))


def test_the_fields_and_their_upstream_aliases():
    r = parse({"retakeSeed": "7", "retakeVariance": 0.25})
    assert (r.retake_seed, r.retake_variance) == ((7,), 0.25)
    d = parse({})
    assert (d.retake_seed, d.retake_variance) == (None, 0.0)
    assert parse({"retake_seed": None, "retake_variance": None}).retake_variance == 0.0  # null: the default
    assert parse({"retake_seed": "1, -1", "batch_size": 2}).retake_seed == (1, -1)


@pytest.mark.parametrize("fields,name", [
    ({"retake_variance": 1.5}, "retake_variance"), ({"retake_variance": -0.1}, "retake_variance"),
    ({"retake_variance": "lots"}, "retake_variance"), ({"retake_seed": "abc"}, "retake_seed"),
    ({"retake_seed": 2**32}, "retake_seed"), ({"retake_seed": 1.5}, "retake_seed"),
    ({"retake_seed": "1,2,3", "batch_size": 2}, "retake_seed"),
])
def test_bad_values_are_refused_by_name(fields, name):
    with pytest.raises(InputError) as err:
        parse(fields)
    assert err.value.field == name and name in str(err.value)


def test_retake_seeds_are_drawn_only_while_the_variance_is_above_zero():
    assert draw_retake_seeds(parse({"retake_seed": 5, "batch_size": 3})) is None
    assert draw_retake_seeds(parse({"retake_seed": 5, "retake_variance": 0.2, "batch_size": 3})) == (5, 6, 7)
    assert draw_retake_seeds(parse({"retake_seed": "5,-1", "retake_variance": 0.2, "batch_size": 2}))[0] == 5
    drawn = draw_retake_seeds(parse({"retake_variance": 0.2, "batch_size": 2}))
    assert len(drawn) == 2 and all(0 <= s < 2**32 for s in drawn)


def test_use_random_seed_leaves_the_retake_seed_alone():
    request = parse({"seed": 1, "use_random_seed": True, "retake_seed": 5, "retake_variance": 0.5})
    assert draw_retake_seeds(request) == (5,)  # upstream resolves retake seeds apart from use_random_seed


def test_a_retake_seed_without_a_variance_is_reported_unused():
    assert "retake_variance is 0" in replaced_fields(parse({"retake_seed": 5}))["retake_seed"]
    assert "retake_seed" not in replaced_fields(parse({"retake_seed": 5, "retake_variance": 0.1}))


def test_the_command_lines_send_the_retake_fields():
    parser = cli.argparse.ArgumentParser()
    cli._generate_parser(parser.add_subparsers())
    args = parser.parse_args(["generate", "--retake-seed", "7", "--retake-variance", "0.3"])
    assert {"retake_seed": "7", "retake_variance": 0.3}.items() <= cli._request(args).items()
    args = client.build_parser().parse_args(["--retake-seed", "7,8", "-b", "2", "--retake-variance", "0.3"])
    assert {"retake_seed": "7,8", "retake_variance": 0.3}.items() <= client.request_fields(args).items()
    with pytest.raises(InputError, match="retake_variance"):
        client.request_fields(client.build_parser().parse_args(["--retake-variance", "2"]))
    spec = importlib.util.spec_from_file_location("one_file_client", REPO / "generate_music.py")
    one_file = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(one_file)
    args = one_file.build_parser().parse_args(["--retake-seed", "7", "--retake-variance", "0.3"])
    assert {"retake_seed": "7", "retake_variance": 0.3}.items() <= one_file.request_fields(args).items()
