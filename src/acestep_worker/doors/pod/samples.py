"""`/create_random_sample`: a random starting point for the form, in upstream's two shapes.

`simple_mode` gives a description to send as `sample_query`; any other type gives a full custom
form (caption, lyrics, metadata). With a planner LM loaded, the custom form is written by the
planner's sample mode from a random description; without one it comes from the examples below.
The examples are this project's own.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from ...schema import values
from ...schema.values import MAX_SEED

if TYPE_CHECKING:
    from ...pipeline.engine import Engine

# (description, instrumental, vocal language)
DESCRIPTIONS = (
    ("a warm acoustic folk song about leaving home at dawn", False, "en"),
    ("driving synthwave with a neon night-drive feeling", True, "unknown"),
    ("a gentle lo-fi hip hop beat for studying, vinyl crackle and soft keys", True, "unknown"),
    ("an upbeat J-pop anthem with bright guitars and a catchy chorus", False, "ja"),
    ("a slow soulful ballad with piano and a brass section", False, "en"),
    ("energetic latin pop with congas and a dance-floor hook", False, "es"),
    ("a cinematic orchestral piece that builds to a heroic finale", True, "unknown"),
    ("melancholic indie rock about a city in the rain", False, "en"),
)

# Full forms for servers without a planner: think, caption, lyrics and metadata.
CUSTOM_EXAMPLES = (
    {"caption": "acoustic folk, fingerpicked guitar, soft male vocal, warm and intimate, slow tempo",
     "lyrics": "[Verse]\nThe kettle sings before the sun\nI pack the road in a paper bag\n\n[Chorus]\n"
               "Leaving at dawn, leaving at dawn\nThe porch light stays on",
     "bpm": 84, "duration": 120, "keyscale": "G major", "language": "en", "timesignature": "4"},
    {"caption": "synthwave, retro analog synths, gated drums, pulsing bass, night drive, instrumental",
     "lyrics": "[Instrumental]", "bpm": 108, "duration": 150, "keyscale": "A minor", "language": "unknown",
     "timesignature": "4"},
    {"caption": "lo-fi hip hop, dusty drums, mellow electric piano, vinyl crackle, relaxed",
     "lyrics": "[Instrumental]", "bpm": 76, "duration": 90, "keyscale": "F major", "language": "unknown",
     "timesignature": "4"},
    {"caption": "soul ballad, piano, brass section, powerful female vocal, emotional build",
     "lyrics": "[Verse]\nYou left the window open wide\nThe winter found its way inside\n\n[Chorus]\n"
               "Hold on, hold on to me\nUntil the morning sets us free",
     "bpm": 70, "duration": 180, "keyscale": "Eb major", "language": "en", "timesignature": "6"},
)


def random_sample(engine: Engine, sample_type: str, rng: random.Random) -> dict:
    description, instrumental, language = rng.choice(DESCRIPTIONS)
    if sample_type == "simple_mode":
        return {"description": description, "instrumental": instrumental, "vocal_language": language}
    if engine.models.planner is not None:
        from ...pipeline.planner_services import create_sample  # the planner's: torch loads with it

        form = create_sample(engine.models, description, instrumental=instrumental,
                             language=values.language(language), seed=rng.randint(0, MAX_SEED))
        if instrumental and not form["lyrics"].strip():
            form["lyrics"] = "[Instrumental]"
    else:
        form = dict(rng.choice(CUSTOM_EXAMPLES))
    return {"think": engine.models.planner is not None, **form}
