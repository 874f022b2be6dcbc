"""Quantities: byte and count units, dtypes, reading ``"2 GiB"`` and writing numbers for people.

Memory is in **bytes**. ``GiB = 2**30`` (binary) and ``GB = 10**9`` (decimal) are both
exported; papers mix them (the ZeRO paper uses decimal GB), so say which you mean. Parameter
counts are plain counts (``7.62e9``), FLOPs are floating-point operations.
"""

from __future__ import annotations

import re

KiB = 2**10
MiB = 2**20
GiB = 2**30
TiB = 2**40
KB = 10**3
MB = 10**6
GB = 10**9
TB = 10**12

#: Bytes per stored value for each supported dtype. int4 packs two values in a byte.
DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1, "int4": 0.5}

#: Mixed-precision Adam keeps an fp32 master copy, momentum and variance: 4 + 4 + 4 bytes/param.
ADAM_STATE_BYTES = 12


def dtype_bytes(dtype: str) -> float:
    """Bytes per value of ``dtype`` (``fp32`` 4, ``bf16``/``fp16`` 2, ``int8`` 1, ``int4`` 0.5)."""
    key = dtype.strip().lower()
    key = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}.get(key, key)
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[key]


#: Unit systems understood by :func:`parse_quantity`: unit name -> factor to the base unit.
#: Unit names are matched case-insensitively, except in ``count`` where they are short
#: multipliers (k, M, B = billion, T) and the Chinese 千 / 万 / 亿.
UNIT_SYSTEMS: dict[str, dict[str, float]] = {
    "bytes": {
        "b": 1, "byte": 1, "bytes": 1, "字节": 1,
        "kb": KB, "mb": MB, "gb": GB, "tb": TB,
        "kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
    },
    "count": {
        "": 1, "k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6,
        "b": 1e9, "bn": 1e9, "billion": 1e9, "t": 1e12, "trillion": 1e12,
        "千": 1e3, "万": 1e4, "亿": 1e8,
    },
    "flops": {
        "flop": 1, "flops": 1,
        "kflop": 1e3, "kflops": 1e3, "mflop": 1e6, "mflops": 1e6,
        "gflop": 1e9, "gflops": 1e9, "tflop": 1e12, "tflops": 1e12,
        "pflop": 1e15, "pflops": 1e15, "eflop": 1e18, "eflops": 1e18,
        "zflop": 1e21, "zflops": 1e21,
    },
    "percent": {"%": 1, "percent": 1},
}


def unit_system(unit: str) -> str | None:
    """The name of the unit system ``unit`` belongs to (``"bytes"``, ``"count"``, ...), or None.

    A bare number (``unit == ""``) belongs to ``count``. ``B`` is read as bytes here; inside a
    count answer :func:`parse_quantity` reads it as billion.
    """
    key = unit.strip().lower()
    for name in ("bytes", "flops", "percent", "count"):
        if key in UNIT_SYSTEMS[name]:
            return name
    return None


_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?"
_QUANTITY = re.compile(
    rf"^\s*(?P<num>{_NUMBER})"
    r"(?:\s*(?:\^\s*(?P<pow>[-+]?\d+)|\s*(?:[x×*·]|\\times|\\cdot)\s*10\s*\^\s*\{?(?P<exp>[-+]?\d+)\}?))?"
    r"\s*(?P<unit>[^\d\s].*?)?\s*$"
)


def split_quantity(text: str) -> tuple[float, str]:
    """Split ``"2 GiB"`` into ``(2.0, "GiB")``. Accepts ``1,024``, ``6e23``, ``6×10^23``, ``2^31``.

    Raises ValueError when ``text`` does not start with a number.
    """
    m = _QUANTITY.match(text)
    if not m:
        raise ValueError(f"not a number: {text!r}")
    value = float(m["num"].replace(",", ""))
    if m["pow"] is not None:
        value = value ** int(m["pow"])
    elif m["exp"] is not None:
        value = value * 10.0 ** int(m["exp"])
    return value, (m["unit"] or "").strip()


def parse_quantity(text: str, system: str, default_unit: str = "") -> float:
    """``text`` as a number of base units of ``system`` (bytes, count, flops or percent).

    A bare number is read in ``default_unit`` (so with ``default_unit="GiB"``, ``"2"`` means
    2 GiB). ``parse_quantity("2048 MiB", "bytes") == 2 * GiB``. Raises ValueError for a
    unit outside the system.
    """
    units = UNIT_SYSTEMS[system]
    value, unit = split_quantity(text)
    key = (unit or default_unit).strip()
    factor = units.get(key.lower(), units.get(key))
    if factor is None:
        known = ", ".join(sorted((u for u in units if u), key=lambda u: (len(u), u)))
        raise ValueError(f"unit {unit!r} is not a {system} unit (use one of: {known})")
    return value * factor


def tidy(x: float) -> float:
    """An integral float as an int (exact for the sizes here), so JSON shows 2147483648."""
    return int(x) if isinstance(x, float) and x.is_integer() and abs(x) < 2**63 else x


def format_number(x: float, digits: int = 4) -> str:
    """``x`` with up to ``digits`` significant digits and no trailing zeros (``1.5``, ``2048``)."""
    if x == 0:
        return "0"
    if abs(x) >= 10**digits and float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x)}"
    text = f"{x:.{digits}g}"
    if "e" in text:
        mant, exp = text.split("e")
        return f"{mant}e{int(exp)}"
    return text


def format_bytes(n: float, binary: bool = True, digits: int = 4) -> str:
    """``n`` bytes in the largest fitting unit: ``2 GiB`` (binary) or ``2.147 GB`` (decimal)."""
    base, names = (1024, ("B", "KiB", "MiB", "GiB", "TiB", "PiB")) if binary else (
        1000, ("B", "KB", "MB", "GB", "TB", "PB"))
    i = 0
    while abs(n) >= base and i < len(names) - 1:
        n /= base
        i += 1
    return f"{format_number(n, digits)} {names[i]}"


def format_count(n: float, digits: int = 4) -> str:
    """A parameter or token count with K/M/B/T: ``7.616B``."""
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{format_number(n / factor, digits)}{suffix}"
    return format_number(n, digits)


def format_sci(x: float, digits: int = 4) -> str:
    """``x`` in scientific notation without trailing zeros: ``5.88e23``, ``7e9``."""
    mant, exp = f"{x:.{digits - 1}e}".split("e")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def format_flops(n: float, digits: int = 4) -> str:
    """FLOPs, in scientific notation from 10^4 on: ``8.4e22 FLOPs``."""
    return f"{format_number(n, digits) if abs(n) < 1e4 else format_sci(n, digits)} FLOPs"
