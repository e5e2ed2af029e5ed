"""The regularisers of the Hopfield task by name, and ``NAME[:WEIGHT[:PARAM]]`` on the command line
(no torch here: the command line parses it before torch is imported)."""

from __future__ import annotations

import math

__all__ = ["REGULARISERS", "DEFAULT_PARAM", "parse_spec"]

REGULARISERS = ("none", "frobenius", "column", "gershgorin", "lambda_min")
#: frobenius: probes; column: eta; gershgorin and lambda_min: delta
DEFAULT_PARAM = {"frobenius": 1, "column": 0.9, "gershgorin": 0.01, "lambda_min": 0.01}


def parse_spec(text: str) -> tuple[str, float, float | None]:
    """``"name[:weight[:param]]"`` -> ``(name, weight, param)``; ``"none"`` alone means no regulariser."""
    parts = text.split(":")
    name = parts[0]
    if name not in REGULARISERS or len(parts) > 3:
        raise ValueError(f"a regulariser is NAME[:WEIGHT[:PARAM]] with NAME one of {', '.join(REGULARISERS)}; "
                         f"got {text!r}")
    try:
        weight = float(parts[1]) if len(parts) > 1 and parts[1] else 1.0
        param = float(parts[2]) if len(parts) > 2 and parts[2] else None
    except ValueError:
        raise ValueError(f"WEIGHT and PARAM must be numbers in {text!r}") from None
    if not 0 < weight < math.inf or (param is not None and not 0 < param < math.inf):
        raise ValueError(f"WEIGHT and PARAM must be positive finite numbers in {text!r}")
    if name == "frobenius" and param is not None and param != int(param):
        raise ValueError(f"frobenius's PARAM is its number of probes, a whole number; got {text!r}")
    return name, weight, param
