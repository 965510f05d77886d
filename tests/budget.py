"""How many examples a property test tries: every one in the full run (CI and
`bash scripts/test`), a tenth in the inner loop (`bash scripts/test -m unit`), so that
the unit run stays under ten seconds. tests/conftest.py sets ``QUICK``."""

from __future__ import annotations

QUICK = False


def examples(full: int) -> int:
    """``full`` examples, or a tenth of them (at least 10) in the inner loop."""
    return max(10, full // 10) if QUICK else full
