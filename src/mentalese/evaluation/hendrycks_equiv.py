"""Hendrycks MATH answer equivalence: the string normalisation the MATH paper scored with.

Reimplemented, step for step and quirks included, from `modeling/math_equivalence.py` (`is_equiv`,
`_strip_string`) of https://github.com/hendrycks/math at commit 940d1bf (MIT License; Hendrycks et al.
2021, "Measuring Mathematical Problem Solving With the MATH Dataset"). Two answers are equal when their
normalised strings are identical; there is no algebra, so ordered tuples are not sets: "(1,2)" != "(2,1)"
and "1,2" != "2,1" (math-verify compares the last pair as sets), "0.5" == "\\frac{1}{2}" but
"0.25" != "\\frac{1}{4}" and "50%" != "50". Where the original raises (two "\\text{ " unit suffixes, a
bare trailing "\\sqrt" or "\\frac"), it falls back to raw string equality, and so does this.
"""

from __future__ import annotations


class _Unnormalisable(ValueError):
    """Where the original code raises; is_equiv then compares the raw strings."""


def _fix_fracs(text: str) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1{72} -> \\frac{1}{72}; a one-character tail leaves the whole string alone."""
    first, *rest = text.split("\\frac")
    out = [first]
    for tail in rest:
        if not tail:
            raise _Unnormalisable("\\frac with nothing after it")
        if tail[0] == "{":
            out.append("\\frac" + tail)
        elif len(tail) < 2:
            return text
        elif tail[1] != "{":
            out.append(f"\\frac{{{tail[0]}}}{{{tail[1]}}}{tail[2:]}")
        else:
            out.append(f"\\frac{{{tail[0]}}}{tail[1:]}")
    return "".join(out)


def _fix_a_slash_b(text: str) -> str:
    """'3/4' -> '\\frac{3}{4}' when both sides are plain integers written canonically."""
    parts = text.split("/")
    if len(parts) != 2:
        return text
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return text
    return f"\\frac{{{a}}}{{{b}}}" if text == f"{a}/{b}" else text


def _remove_right_units(text: str) -> str:
    """Drop a unit written as '\\text{ ...}' at the right (the original asserts there is only one)."""
    if "\\text{ " not in text:
        return text
    parts = text.split("\\text{ ")
    if len(parts) != 2:
        raise _Unnormalisable("more than one '\\text{ ' unit")
    return parts[0]


def _fix_sqrt(text: str) -> str:
    """\\sqrt3 -> \\sqrt{3} (only the first character is taken as the argument)."""
    first, *rest = text.split("\\sqrt")
    out = [first]
    for tail in rest:
        if not tail:
            raise _Unnormalisable("\\sqrt with nothing after it")
        out.append("\\sqrt" + tail if tail[0] == "{" else f"\\sqrt{{{tail[0]}}}{tail[1:]}")
    return "".join(out)


def strip_string(text: str) -> str:
    """The MATH normal form of an answer string (the original `_strip_string`); may raise _Unnormalisable."""
    text = text.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    text = text.replace("tfrac", "frac").replace("dfrac", "frac")
    text = text.replace("\\left", "").replace("\\right", "")
    text = text.replace("^{\\circ}", "").replace("^\\circ", "")  # degrees
    text = text.replace("\\$", "")
    text = _remove_right_units(text)
    text = text.replace("\\%", "")  # only "\%": the original's second line is the same "\%" again, so "50%" != "50"
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    sides = text.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:  # "k = 3" -> "3"
        text = sides[1]
    text = _fix_sqrt(text).replace(" ", "")
    text = _fix_fracs(text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    return _fix_a_slash_b(text)


def hendrycks_is_equiv(pred: str | None, ref: str | None) -> bool:
    """MATH's `is_equiv`: equal normal forms, raw equality where normalising fails; None equals only None."""
    if pred is None or ref is None:
        return pred is None and ref is None
    try:
        return strip_string(pred) == strip_string(ref)
    except _Unnormalisable:
        return pred == ref
