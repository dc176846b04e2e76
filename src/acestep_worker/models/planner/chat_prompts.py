"""The planner's chat prompts, byte for byte as upstream builds them.

Every prompt is a system turn `# Instruction\\n{instruction}\\n\\n` and a user turn, rendered with the
checkpoint's own chat template; the codes prompt adds a closed assistant turn holding the CoT.
"""

from __future__ import annotations

from .lm import PlannerLM

GENERATE_INSTRUCTION = "Generate audio semantic tokens based on the given conditions:"
INSPIRE_INSTRUCTION = "Expand the user's input into a more detailed and specific musical description:"
UNDERSTAND_INSTRUCTION = "Understand the given musical conditions and describe the audio semantics accordingly:"
FORMAT_INSTRUCTION = "Format the user's input into a more detailed and specific musical description:"
NO_USER_INPUT = "NO USER INPUT"
EMPTY_COT = "<think>\n</think>"


def _system(instruction: str) -> dict:
    return {"role": "system", "content": f"# Instruction\n{instruction}\n\n"}


def _caption_and_lyrics(caption: str, lyrics: str) -> str:
    return f"# Caption\n{caption}\n\n# Lyric\n{lyrics}\n"


def meaningful_negative(negative: str | None) -> bool:
    return bool(negative and negative.strip() and negative.strip() != NO_USER_INPUT)


def cot_prompts(lm: PlannerLM, caption: str, lyrics: str, negative: str | None) -> tuple[str, str]:
    """Phase 1 (metadata): conditional prompt, and the unconditional one for CFG (caption removed,
    or replaced by a meaningful negative prompt)."""
    cond = [_system(GENERATE_INSTRUCTION), {"role": "user", "content": _caption_and_lyrics(caption, lyrics)}]
    uncond_user = (_caption_and_lyrics(negative, lyrics) if meaningful_negative(negative)
                   else f"# Lyric\n{lyrics}\n")
    uncond = [_system(GENERATE_INSTRUCTION), {"role": "user", "content": uncond_user}]
    return lm.render(cond, True), lm.render(uncond, True)


def codes_prompts(lm: PlannerLM, caption: str, lyrics: str, cot: str, negative: str | None) -> tuple[str, str]:
    """Phase 2 (audio codes): the user turn plus a closed assistant turn with the CoT; the
    unconditional twin has an empty CoT. Codes are generated after the closing `<|im_end|>\\n`."""
    def build(user_caption: str, assistant: str) -> str:
        text = lm.render([_system(GENERATE_INSTRUCTION),
                          {"role": "user", "content": _caption_and_lyrics(user_caption, lyrics)},
                          {"role": "assistant", "content": assistant}], False)
        return text if text.endswith("\n") else text + "\n"

    return build(caption, cot), build(negative if meaningful_negative(negative) else caption, EMPTY_COT)


def format_prompt(lm: PlannerLM, caption: str, lyrics: str) -> str:
    """Format mode: the LM rewrites the caption and lyrics (note: no newline after the lyrics)."""
    user = f"# Caption\n{caption or NO_USER_INPUT}\n\n# Lyric\n{lyrics or '[Instrumental]'}"
    return lm.render([_system(FORMAT_INSTRUCTION), {"role": "user", "content": user}], True)


def sample_prompt(lm: PlannerLM, query: str, instrumental: bool) -> str:
    """Sample (inspiration) mode: a description becomes caption, lyrics and metadata."""
    user = f"{query.strip() or NO_USER_INPUT}\n\ninstrumental: {'true' if instrumental else 'false'}"
    return lm.render([_system(INSPIRE_INSTRUCTION), {"role": "user", "content": user}], True)


def understand_prompt(lm: PlannerLM, code_string: str) -> str:
    """Audio understanding: the user turn is the audio-code string itself, nothing around it (upstream
    runs it without guidance, so there is no unconditional twin)."""
    return lm.render([_system(UNDERSTAND_INSTRUCTION), {"role": "user", "content": code_string}], True)
