"""Hostile values in the schema are one bounded sentence naming the field: deep nesting, lone surrogates,
huge collections and degenerate timesteps."""

import pytest

from acestep_worker.errors import MAX_MESSAGE_CHARS, InputError, echo
from acestep_worker.models.dit.schedules import MAX_CUSTOM_TIMESTEPS, turbo_timesteps
from acestep_worker.schema.request import JobRequest, parse
from acestep_worker.schema.values import MAX_TIMESTEPS


def deep(levels: int, leaf=1):
    value = leaf
    for _ in range(levels):
        value = [value]
    return value
# -- the schema -----------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [40, 5_000, 100_000])
def test_deep_values_are_a_sentence_not_a_recursion_error(levels):
    with pytest.raises(InputError, match="nested more than 16 levels") as err:
        parse({"caption": deep(levels)}, JobRequest)
    assert err.value.field == "caption"


def test_a_deep_unknown_field_is_a_sentence():
    with pytest.raises(InputError) as err:
        parse({"x" * 10_000: deep(3_000)})
    assert len(str(err.value)) < MAX_MESSAGE_CHARS and len(err.value.field) <= 60


@pytest.mark.parametrize("data,field", [({"caption": "a\ud800b"}, "caption"), ({"src_audio": "/x/\udfff.wav"}, "src_audio"),
                                        ({"seed": ["\ud800"]}, "seed")])
def test_lone_surrogates_are_a_sentence(data, field):
    with pytest.raises(InputError, match="not valid Unicode") as err:
        parse(data, JobRequest)
    assert err.value.field == field


def test_huge_collections_are_refused_quickly():
    with pytest.raises(InputError, match="more than 10000 values"):
        parse({"seed": list(range(200_000))})


def test_echo_summarises_what_it_cannot_show_briefly():
    assert echo("abc") == "'abc'" and echo([1, "a"]) == "[1, 'a']"
    assert echo(deep(100_000)) == "a list of 1 item(s)" and echo(2 ** 100_000).startswith("an integer of")
    assert len(echo("é" * 10_000)) <= 60


def test_timesteps_rule_and_docs_agree_on_twenty():
    assert MAX_TIMESTEPS == MAX_CUSTOM_TIMESTEPS == 20
    twenty = [round(1 - i / 21, 4) for i in range(20)]
    assert len(parse({"timesteps": twenty}).timesteps) == 20
    assert len(parse({"timesteps": twenty + [0]}).timesteps) == 20  # upstream's final 0 is not a step
    with pytest.raises(InputError, match="1 to 20 strictly descending"):
        parse({"timesteps": [round(1 - i / 22, 4) for i in range(21)]})
    for bad in ([0], [0.5, 0.5], [1.5, 0.5], ["nan"], [0.5, -0.1]):
        with pytest.raises(InputError, match="timesteps"):
            parse({"timesteps": bad})


@pytest.mark.parametrize("times", [[1.0, 0.99, 0.98, 0.95], [0.99, 0.98, 0.5, 0.49, 0.3],
                                   [round(1 - i / 21, 4) for i in range(20)]])
def test_snapping_never_makes_a_repeated_or_zero_length_step(times):
    snapped = turbo_timesteps(1.0, timesteps=parse({"timesteps": times}).timesteps).tolist()
    assert all(b < a for a, b in zip(snapped, snapped[1:])), snapped
    assert snapped[-1] > 0
