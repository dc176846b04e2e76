"""Hostile values reaching the engine are one bounded sentence naming the field, never the input in full."""

import pytest

from acestep_worker.errors import InputError
from acestep_worker.schema.request import parse


@pytest.mark.parametrize("data,field", [
    ({"model": "m" * 1_000_000}, "model"), ({"caption": "c" * 1_000_000}, "caption"),
    ({"bpm": 10 ** 5000}, "bpm"), ({"seed": "1," * 300_000}, "seed"), ({"k" * 1_000_000: 1}, "k" * 60),
    ({"timesteps": "0.5," * 100_000}, "timesteps"), ({"vocal_language": "x" * 1_000_000}, "vocal_language"),
])
def test_error_messages_never_echo_input_in_full(engine, data, field):
    with pytest.raises(InputError) as err:
        engine.generate(parse(data))  # the model name is only checked by the engine
    assert len(str(err.value)) < 2_500, len(str(err.value))  # the accepted-field list alone is ~1,100
    assert err.value.field[:50] == field[:50]
