"""The champion/challenger gate: a pure decision from two scores on the same held-out test set, and the candidate's
per-group comparison with the champion on those rows (``airloop.groups``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from airloop import groups as judged_groups
from airloop.groups import GroupGap
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
    metric: str,
    candidate: float,
    champion: float | None,
    margin: float,
    experiment: str | None = None,
    groups: Sequence[GroupGap] = (),
) -> Decision:
    """No champion -> champion; better than the champion by at least ``margin`` -> challenger, or held when
    ``experiment`` (a running A/B or shadow experiment, described) is under way; else rejected. A candidate better
    overall but worse than the champion for a group (``groups``: the per-group comparison, ``airloop.groups``) is
    rejected, the groups named."""
    if champion is None:
        return Decision(Outcome.CHAMPION, "no champion yet", metric, candidate, None)
    gain = candidate - champion if metric in HIGHER_IS_BETTER else champion - candidate
    verdict = f"{metric} {candidate:.4f} vs champion {champion:.4f} (gain {gain:+.4f}, margin {margin})"
    refused = judged_groups.refusals(groups)
    if gain >= margin and refused:
        reason_text = f"better overall ({verdict}) but {judged_groups.reason(refused)}"
        return Decision(Outcome.REJECTED, reason_text, metric, candidate, champion)
    if gain >= margin and experiment:
        reason = f"better: {verdict}; held, not made challenger: {experiment}"
        return Decision(Outcome.HELD, reason, metric, candidate, champion)
    if gain >= margin:
        return Decision(Outcome.CHALLENGER, f"better: {verdict}", metric, candidate, champion)
    return Decision(Outcome.REJECTED, f"not better by the margin: {verdict}", metric, candidate, champion)
