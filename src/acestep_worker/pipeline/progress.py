"""Progress of one generation: stages, diffusion steps, and the fraction of the whole job done."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import GenerationCancelled

# Share of the whole job each stage takes, for progress fractions.
STAGE_WEIGHTS = {"text_encoding": 0.03, "conditioning": 0.02, "diffusion": 0.80, "vae_decode": 0.15}


@dataclass(frozen=True)
class Progress:
    stage: str
    step: int  # steps done within the stage (diffusion steps; 0/1 for the others)
    total_steps: int
    fraction: float  # of the whole job, 0..1


class ProgressTracker:
    """Turns stage/step callbacks into Progress reports and honours `should_stop` between steps."""

    def __init__(self, on_progress, should_stop, uses_planner: bool = False, writes_codes: bool = False,
                 encodes_audio: bool = False):
        self.on_progress, self.should_stop = on_progress, should_stop
        self.steps = 1  # diffusion steps, once the schedule is known (expect_steps)
        weights = dict(STAGE_WEIGHTS)
        if uses_planner:
            weights["planning"] = 0.10
        if writes_codes:
            weights["audio_codes"] = 0.45
        if encodes_audio:
            weights["vae_encode"] = 0.10
        total = sum(weights.values())
        self.weights = {k: v / total for k, v in weights.items()}
        self.done = 0.0
        self.current: str | None = None

    def expect_steps(self, diffusion_steps: int) -> None:
        """The schedule's step count, which the diffusion stage's reports count against."""
        self.steps = diffusion_steps

    def expect_passes(self, passes: int) -> None:
        """The batch's stages run `passes` times (a several-stem job in several DiT batches): each pass
        takes its share of them."""
        for name in STAGE_WEIGHTS:
            self.weights[name] /= max(1, passes)

    def check(self) -> bool:
        if self.should_stop is not None and self.should_stop():
            raise GenerationCancelled("generation stopped on request")
        return False

    def _report(self, stage: str, step: int, total: int, within: float) -> None:
        if self.on_progress is not None:
            fraction = min(1.0, self.done + self.weights.get(stage, 0.0) * within)
            self.on_progress(Progress(stage, step, total, fraction))

    def stage(self, name: str) -> None:
        self.check()
        if name == self.current:
            return
        if self.current is not None:
            self.done += self.weights.get(self.current, 0.0)
        self.current = name
        total = self.steps if name == "diffusion" else 1
        self._report(name, 0, total, 0.0)

    def step(self, done: int, total: int) -> None:
        self._report("diffusion", done, total, done / total)
        self.check()

    def code_step(self, done: int, total: int) -> None:
        if done == total or done % 25 == 0:  # one report per 5 s of music is plenty
            self._report("audio_codes", done, total, done / total)

    def finish(self) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress("done", 1, 1, 1.0))
