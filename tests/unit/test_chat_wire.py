"""Upstream's chat-completions and create-sample bodies, read into the one schema, and the answers'
shapes; no model, no server."""

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acestep_worker.doors.pod.chat_wire import (
    ChunkWriter,
    audio_url,
    completion,
    looks_like_lyrics,
    read_chat,
    summary,
)
from acestep_worker.doors.pod.sample_routes import sample_answer, sample_request
from acestep_worker.errors import InputError

WAV = "data:audio/wav;base64," + base64.b64encode(b"RIFF0000WAVE").decode()


def chat(content, **body):
    return read_chat({"model": "acestep/acestep-v15-turbo", "messages": [{"role": "user", "content": content}],
                      **body})


def test_tagged_prompt_and_lyrics_become_caption_and_lyrics():
    request = chat("<prompt>warm folk</prompt>\n<lyrics>[Verse]\nhome at dawn</lyrics>").generation
    assert (request.caption, request.lyrics, request.sample_mode) == ("warm folk", "[Verse]\nhome at dawn", False)


def test_untagged_text_with_section_markers_is_lyrics():
    request = chat("[Verse 1]\nWalking down the street\n\n[Chorus]\nDance with me").generation
    assert request.lyrics.startswith("[Verse 1]") and request.caption == "" and not request.sample_mode


def test_plain_description_is_the_caption_unless_sample_mode_is_asked():
    request = chat("a soft folk song about hometown and memories").generation
    assert request.caption == "a soft folk song about hometown and memories"
    assert not request.sample_mode and request.sample_query == "" and request.lyrics == ""
    sampled = chat("a soft folk song", sample_mode=True).generation
    assert sampled.sample_mode and sampled.sample_query == "a soft folk song" and sampled.caption == ""


def test_explicit_lyrics_make_the_message_the_caption():
    request = chat("energetic EDM with heavy bass", lyrics="[Drop]\nla la").generation
    assert (request.caption, request.lyrics, request.sample_mode) == ("energetic EDM with heavy bass", "[Drop]\nla la",
                                                                      False)


def test_sample_mode_makes_even_lyric_like_text_the_query():
    request = chat("[Verse]\nrain", sample_mode=True).generation
    assert request.sample_mode and request.sample_query == "[Verse]\nrain" and request.lyrics == ""


def test_only_the_last_user_message_counts():
    request = read_chat({"messages": [{"role": "system", "content": "you write songs"},
                                      {"role": "user", "content": "<prompt>first</prompt>"},
                                      {"role": "assistant", "content": "ok"},
                                      {"role": "user",
                                       "content": [{"type": "text", "text": "<prompt>second</prompt>"}]}]})
    assert request.generation.caption == "second" and request.model_id is None


def test_audio_config_and_openai_sampling_map_to_schema_fields():
    request = chat("<prompt>lofi</prompt>", temperature=0.5, top_p=0.8, top_k=40, seed="1,2", batch_size=2,
                   audio_config={"duration": 30, "bpm": 90, "key_scale": "A minor", "time_signature": "4/4",
                                 "vocal_language": "ja", "format": "flac"}, max_tokens=100, n=1).generation
    assert (request.lm_temperature, request.lm_top_p, request.lm_top_k) == (0.5, 0.8, 40)
    assert request.seed == (1, 2) and request.use_random_seed is False and request.batch_size == 2
    assert (request.duration, request.bpm, request.time_signature, request.vocal_language) == (30, 90, "4", "ja")
    assert request.audio_format == "flac" and request.model == "acestep-v15-turbo"


def test_instrumental_without_lyrics_is_an_instrumental():
    request = chat("<prompt>epic orchestral score</prompt>", audio_config={"instrumental": True}).generation
    assert request.instrumental and request.caption == "epic orchestral score"


def test_audio_parts_route_by_task_type():
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"x" * 32).decode(), "format": "mp3"}}
    text = {"type": "text", "text": "<prompt>jazz cover</prompt>"}
    cover = chat([text, part, {"type": "input_audio", "input_audio": {"data": WAV}}], task_type="cover").generation
    assert cover.src_audio.startswith("data:audio/mpeg;base64,") and cover.reference_audio == WAV
    plain = chat([text, part]).generation
    assert plain.reference_audio.startswith("data:audio/mpeg;base64,") and plain.src_audio is None
    with pytest.raises(InputError, match="at most 1"):
        chat([text, part, part])
    # The schema's alias for task_type routes the same way (upstream's camelCase clients send it).
    aliased = chat([text, part], taskType="cover").generation
    assert aliased.task_type == "cover" and aliased.src_audio.startswith("data:audio/mpeg;base64,")


def test_schema_fields_pass_through_and_unknown_fields_are_refused():
    assert chat("<prompt>x</prompt>", inference_steps=4, shift=2.0).generation.inference_steps == 4
    with pytest.raises(InputError) as refused:
        chat("<prompt>x</prompt>", bogus=1)
    assert refused.value.field == "bogus"


@pytest.mark.parametrize("body,field", [
    ({}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": ""}]}, "messages"),
    ({"messages": [{"role": "user", "content": "<prompt>x</prompt>"}], "stream": "yes"}, "stream"),
    ({"messages": [{"role": "user", "content": "<prompt>x</prompt>"}], "audio_config": {"speed": 2}}, "audio_config"),
    ({"messages": [{"role": "user", "content": "<prompt>x</prompt>"}], "audio_config": {"bpm": 5}}, "bpm"),
    ({"messages": [{"role": "user", "content": "<prompt>x</prompt>"}], "temperature": 9}, "lm_temperature"),
    ({"messages": [{"role": "user", "content": "<prompt>x</prompt>"}], "model": 7}, "model"),
    ({"messages": [{"role": "user", "content": "<prompt>x</prompt>"}], "audio_config": {"duration": 20},
      "duration": 30}, "duration"),
])
def test_bad_chat_bodies_are_refused_naming_the_field(body, field):
    with pytest.raises(InputError) as refused:
        read_chat(body)
    assert refused.value.field == field


def test_lyrics_guess_follows_upstream():
    assert looks_like_lyrics("[chorus]\nla") and looks_like_lyrics("a\nb\nc\nd")
    assert not looks_like_lyrics("one long description of a song") and not looks_like_lyrics("a\nb\nc")


def test_summary_lists_metadata_and_lyrics_but_not_an_instrumental_marker():
    text = summary({"caption": "lofi", "bpm": 90, "requested_duration": 30.0, "key_scale": "A minor",
                    "time_signature": "4", "vocal_language": "en", "lyrics": "[Verse]\nrain", "instrumental": False})
    assert text == ("## Metadata\n**Caption:** lofi\n**BPM:** 90\n**Duration:** 30.0s\n**Key:** A minor\n"
                    "**Time Signature:** 4\n**Language:** en\n\n## Lyrics\n[Verse]\nrain")
    assert "Lyrics" not in summary({"caption": "x", "lyrics": "[Instrumental]", "instrumental": True})
    assert summary({}) == "Music generated successfully."


def test_answers_keep_the_openai_shapes():
    item = audio_url(b"abc", "mp3")
    assert item == {"type": "audio_url", "audio_url": {"url": "data:audio/mpeg;base64,YWJj"}}
    body = completion("acestep/acestep-v15-turbo", "hi", [item])
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi", "audio": [item],
                                             "audio_codes": None}
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["total_tokens"] == 0
    writer = ChunkWriter.start("acestep/x")
    event = writer.event({"content": "."})
    assert event.startswith("data: ") and event.endswith("\n\n")
    chunk = json.loads(event[6:])
    assert chunk["object"] == "chat.completion.chunk" and chunk["choices"][0]["delta"] == {"content": "."}
    assert chunk["choices"][0]["finish_reason"] is None and ChunkWriter.DONE == "data: [DONE]\n\n"


def test_create_sample_reads_upstreams_four_fields():
    assert sample_request({"query": "rock", "instrumental": "true", "vocal_language": "en", "temperature": 0.7}) == (
        "rock", True, "en", 0.7)
    assert sample_request({}) == ("", False, None, 0.85)  # upstream's defaults; "unknown" language = none given
    assert sample_request({"vocal_language": "unknown", "instrumental": False})[2] is None


@pytest.mark.parametrize("body,field", [({"query": "x" * 2001}, "query"), ({"vocal_language": "klingon"},
                                        "vocal_language"), ({"temperature": 3}, "temperature"),
                                       ({"instrumental": "maybe"}, "instrumental")])
def test_create_sample_refuses_bad_values_naming_the_sent_field(body, field):
    with pytest.raises(InputError) as refused:
        sample_request(body)
    assert refused.value.field == field and field in str(refused.value)


def test_create_sample_answers_in_upstreams_keys():
    data = {"caption": "c", "lyrics": "l", "bpm": 120, "duration": 60, "keyscale": None, "language": None,
            "timesignature": "4"}
    assert sample_answer(data, None) == {"caption": "c", "lyrics": "l", "bpm": 120, "keyscale": "", "duration": 60,
                                         "timesignature": "4", "vocal_language": "unknown"}


values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
                      lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children,
                                                                                         max_size=3), max_leaves=12)
parts = st.one_of(values, st.fixed_dictionaries({"type": st.sampled_from(["text", "input_audio", "x"])},
                                                optional={"text": values, "input_audio": values}))
messages = st.lists(st.one_of(values, st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "x"]),
     "content": st.one_of(values, st.lists(parts, max_size=3))})), max_size=3)
chat_keys = ["model", "stream", "audio_config", "temperature", "top_p", "top_k", "seed", "lyrics", "sample_mode",
             "task_type", "batch_size", "n", "caption", "bogus"]


@settings(max_examples=300, deadline=None, database=None)
@given(messages=messages, extra=st.dictionaries(st.sampled_from(chat_keys), values, max_size=4))
def test_any_chat_body_is_read_or_refused_with_a_sentence(messages, extra):
    try:
        read_chat({"messages": messages, **extra})
    except InputError as exc:
        assert exc.field and len(str(exc)) < 2_000


@settings(max_examples=200, deadline=None, database=None)
@given(body=st.dictionaries(st.sampled_from(["query", "instrumental", "vocal_language", "temperature", "x"]), values))
def test_any_create_sample_body_is_read_or_refused_with_a_sentence(body):
    try:
        sample_request(body)
    except InputError as exc:
        assert exc.field in {"query", "instrumental", "vocal_language", "temperature"}
