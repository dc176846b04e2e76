"""Best-of-N, this server's own (upstream offers none): make batch_size takes, keep the best k.

Takes are ranked by one of the alignment scores (`rank_by`, higher is better), ties and takes
without a score (a take whose lyrics the planner left instrumental) kept in take order, unscored
last. The kept songs come back best first; every take's score, seed and whether it was kept are
listed in the result (`params.takes`), so a caller can see what the others scored.
"""

from __future__ import annotations

from typing import Protocol, Sequence

SCORES = ("lm_score", "dit_score", "quality_score")  # each take's scores listed in the ranking


class Take(Protocol):
    seed: int
    extras: dict


def best_of(takes: Sequence[Take], keep: int | None, rank_by: str) -> tuple[list, list[dict] | None]:
    """(the songs to deliver, the ranking of every take); without `keep`, every take and no ranking."""
    if keep is None:
        return list(takes), None
    order = sorted(range(len(takes)), key=lambda i: (takes[i].extras.get(rank_by) is None,
                                                     -(takes[i].extras.get(rank_by) or 0.0), i))
    kept = set(order[:keep])
    ranking = []
    for rank, index in enumerate(order, start=1):
        take = takes[index]
        take.extras.update(take=index + 1, rank=rank)
        ranking.append({"take": index + 1, "seed": take.seed, "rank": rank, "kept": index in kept,
                        rank_by: take.extras.get(rank_by),
                        **{k: take.extras[k] for k in SCORES if k in take.extras and k != rank_by}})
    ranking.sort(key=lambda row: row["take"])
    return [takes[i] for i in order[:keep]], ranking
