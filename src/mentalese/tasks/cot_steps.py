"""The result of one CoT step: the number after the step's last '='.

One parser for every reader of CoT steps (the CODI thought-loss targets, the CODI probe):

    step_result("<<600*30/100=180>>")                 -> "180"    GSM8k-Aug / GSM8K calculator annotation
    step_result("600*30/100=180")                     -> "180"
    step_result("9*2=8")                              -> "8"      chain task
    step_result("100-150=-50.")                       -> "-50"    trailing punctuation dropped
    step_result("<<2/.5=4.50>>")                      -> "4.50"   decimals kept as written
    step_result("x = 1,250")                          -> "1250"   thousands commas removed
    step_result("He pays 100*3 = $300 per year.")     -> "300"    natural-language step ('$' and unit words skipped)
    step_result("<<3/4=3/4>>"), step_result("5 5 6")  -> None     no number right after the last '=', or no '='
"""

from __future__ import annotations

import re

_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?"
# after the last '=': optional '$', the number, then '>>', or punctuation (maybe none) and a space or the end
_RESULT = re.compile(rf"\s*\$?\s*(?P<num>{_NUMBER})(?=>>|[.,;:!?]*(?:\s|$))")


def step_result(step: str) -> str | None:
    """The number after the last '=' of `step` (sign kept, '+' and thousands commas dropped), or None."""
    if "=" not in step:
        return None
    match = _RESULT.match(step.rsplit("=", 1)[1])
    number = match.group("num") if match else ""
    if not any(c.isdigit() for c in number):
        return None
    return number.replace(",", "").lstrip("+")
