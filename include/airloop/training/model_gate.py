"""The champion/challenger gate: a pure decision from two scores on the same held-out test set."""

from __future__ import annotations

from dataclasses import dataclass

from airloop.registry.contract import Outcome
from airloop.training.evaluate import HIGHER_IS_BETTER


@dataclass(frozen=True)
class Decision:
    """What happens to a candidate, and why."""

    outcome: Outcome
    reason: str
    metric: str
    candidate_score: float
    champion_score: float | None


def decide(
    metric: str, candidate: float, champion: float | None, margin: float, experiment: str | None = None
) -> Decision:
    """No champion -> champion; better than the champion by at least ``margin`` -> challenger, or held when
    ``experiment`` (a running A/B or shadow experiment, described) is under way; else rejected."""
    if champion is None:
        return Decision(Outcome.CHAMPION, "no champion yet", metric, candidate, None)
    gain = candidate - champion if metric in HIGHER_IS_BETTER else champion - candidate
    verdict = f"{metric} {candidate:.4f} vs champion {champion:.4f} (gain {gain:+.4f}, margin {margin})"
    if gain >= margin and experiment:
        reason = f"better: {verdict}; held, not made challenger: {experiment}"
        return Decision(Outcome.HELD, reason, metric, candidate, champion)
    if gain >= margin:
        return Decision(Outcome.CHALLENGER, f"better: {verdict}", metric, candidate, champion)
    return Decision(Outcome.REJECTED, f"not better by the margin: {verdict}", metric, candidate, champion)
