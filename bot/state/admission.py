"""What a start's admission asks of the store, and what it answers
(``Store.admit``): the per-user limit, the duplicate claim and, with ``ConsentCheck``, the
suppression list and the contact's caps, all in one atomic step."""

from __future__ import annotations

from dataclasses import dataclass

# (at most this many, in this many seconds, of starts whose member begins with this
# prefix: "" for every flow)
CapRule = tuple[int, float, str]


@dataclass(frozen=True)
class ConsentCheck:
    """The consent part of an admission: ``contact``'s entry in the suppression list
    ``optouts`` refuses it; else its starts kept in ``reach`` are counted under ``caps``;
    once admitted, the start holds ``hold`` there (a member ``<flow>|<user>|<nonce>``)."""

    optouts: str
    contact: str
    reach: str = ""
    caps: tuple[CapRule, ...] = ()
    hold: str = ""

    @property
    def longest(self) -> float:
        return max((seconds for _, seconds, _ in self.caps), default=0.0)


@dataclass(frozen=True)
class Admitted:
    """The store's answer: ``wait`` > 0 (seconds) when the use does not fit; ``claimed``
    the duplicate claim; ``optout``: the contact's entry (JSON) when it opted out;
    ``again``: when a capped contact may be reached again (epoch seconds, else 0)."""

    wait: float = 0.0
    claimed: bool = False
    optout: str | None = None
    again: float = 0.0


def cap_again(caps: tuple[CapRule, ...], starts: list[tuple[str, float]], now: float) -> float:
    """When a contact with ``starts`` (member, when) may be reached again under ``caps``
    (0: now); the memory store's reading of ``scripts._CAPPED``."""
    again = 0.0
    for amount, seconds, prefix in caps:
        scores = sorted(t for m, t in starts if t > now - seconds and m.startswith(prefix))
        if len(scores) >= amount:
            again = max(again, scores[len(scores) - amount] + seconds)
    return again
