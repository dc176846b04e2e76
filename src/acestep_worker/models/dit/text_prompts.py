"""The text prompts the DiT was trained on, byte for byte as upstream builds them.

The caption branch reads `# Instruction / # Caption / # Metas`; the lyric branch reads
`# Languages / # Lyric`. Both end in a literal `<|endoftext|>`; the tokenizer appends another.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...schema.values import is_instrumental

TEXT2MUSIC_INSTRUCTION = "Fill the audio semantic mask based on the given conditions:"
COVER_INSTRUCTION = "Generate audio semantic tokens based on the given conditions:"

CAPTION_TEMPLATE = "# Instruction\n{instruction}\n\n# Caption\n{caption}\n\n# Metas\n{metas}<|endoftext|>\n"
LYRIC_TEMPLATE = "# Languages\n{language}\n\n# Lyric\n{lyrics}<|endoftext|>"

CAPTION_MAX_TOKENS = 256
LYRIC_MAX_TOKENS = 2048

INSTRUMENTAL_LYRICS = "[Instrumental]"
NOT_AVAILABLE = "N/A"


@dataclass(frozen=True)
class Metas:
    """Musical metadata written into the caption prompt; None means "not given" (N/A)."""

    bpm: int | None = None
    time_signature: str | None = None
    key_scale: str | None = None
    duration_s: float | None = None

    def render(self) -> str:
        def value(v: object) -> str:
            return NOT_AVAILABLE if v in (None, "") else str(v)

        duration = f"{int(self.duration_s)} seconds" if self.duration_s is not None else "30 seconds"
        return (f"- bpm: {value(self.bpm)}\n- timesignature: {value(self.time_signature)}\n"
                f"- keyscale: {value(self.key_scale)}\n- duration: {duration}\n")


def format_instruction(instruction: str) -> str:
    return instruction if instruction.endswith(":") else instruction + ":"


def caption_prompt(caption: str, metas: Metas, instruction: str = TEXT2MUSIC_INSTRUCTION) -> str:
    return CAPTION_TEMPLATE.format(instruction=format_instruction(instruction), caption=caption,
                                   metas=metas.render())


def lyric_prompt(lyrics: str, language: str) -> str:
    text = INSTRUMENTAL_LYRICS if is_instrumental(lyrics) else lyrics
    return LYRIC_TEMPLATE.format(language=language, lyrics=text)

