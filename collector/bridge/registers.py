"""Modbus register maps as data: which reads a profile needs, and how words become numbers.

Pure functions, no I/O: :func:`plan_reads` batches a profile's registers into as few
requests as its gap allowance permits; :func:`decode` turns a value's 16-bit words into an
int or float by its type, word order and byte order.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from greendc.config import ModbusProfile, ModbusRegister

MAX_READ_REGISTERS = 125  # the Modbus limit for one read of holding or input registers

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


@dataclass(frozen=True)
class Read:
    """One request: ``count`` registers from ``address`` with one function code."""

    function: str  # "holding" (03) or "input" (04)
    address: int
    count: int
    registers: tuple[ModbusRegister, ...]


def plan_reads(profile: ModbusProfile) -> list[Read]:
    """The requests that read every register of ``profile``, contiguous ones batched.

    Registers of one function are sorted by address and merged while the hole between them
    is at most ``profile.max_gap_registers`` and the request stays within 125 registers.
    """
    out: list[Read] = []
    for function in ("holding", "input"):
        regs = sorted(
            (r for r in profile.registers if r.function == function), key=lambda r: r.address
        )
        start, end = -1, -1  # end is exclusive
        group: list[ModbusRegister] = []
        for r in regs:
            r_end = r.address + r.count
            if (
                group
                and r.address - end <= profile.max_gap_registers
                and max(end, r_end) - start <= MAX_READ_REGISTERS
            ):
                group.append(r)
                end = max(end, r_end)
                continue
            if group:
                out.append(Read(function, start, end - start, tuple(group)))
            start, end, group = r.address, r_end, [r]
        if group:
            out.append(Read(function, start, end - start, tuple(group)))
    return out


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
