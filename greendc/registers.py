"""Modbus register words to numbers and back: the codec a register map's types imply.

Pure functions shared by the bridge (decoding what a device answers) and the simulator's
devices (encoding what they hold). ``word_order`` big means the most significant 16-bit
register comes first (the Modbus convention most meters follow); ``byte_order`` is the
order of the two bytes within each register.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from greendc.config import ModbusRegister

_STRUCT = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
    "int64": ">q",
    "uint64": ">Q",
    "float64": ">d",
}


def decode(register: ModbusRegister, words: Sequence[int]) -> int | float:
    """The value of ``register`` from its own words (``register.count`` of them).

    ``word_order`` big means the most significant word comes first (the Modbus convention
    most meters follow); ``byte_order`` is the order of the two bytes within each word.
    Raises ValueError for a wrong number of words or a word outside 0..65535.
    """
    if len(words) != register.count:
        raise ValueError(f"{register.type} needs {register.count} registers, got {len(words)}")
    ordered = list(words) if register.word_order == "big" else list(reversed(words))
    data = bytearray()
    for w in ordered:
        if not 0 <= w <= 0xFFFF:
            raise ValueError(f"register value {w} is not a 16-bit word")
        data += w.to_bytes(2, register.byte_order)
    value: int | float = struct.unpack(_STRUCT[register.type], bytes(data))[0]
    return value


def encode(register: ModbusRegister, value: int | float) -> list[int]:
    """The words a device holds for ``value`` (the inverse of :func:`decode`)."""
    data = struct.pack(_STRUCT[register.type], value)
    words = [int.from_bytes(data[i : i + 2], register.byte_order) for i in range(0, len(data), 2)]
    return words if register.word_order == "big" else list(reversed(words))
