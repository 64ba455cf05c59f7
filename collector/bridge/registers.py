"""Modbus register maps as data: which reads a profile needs (the word codec is in the core,
:mod:`greendc.registers`, shared with the simulator's devices).

Pure functions, no I/O: :func:`plan_reads` batches a profile's registers into as few
requests as its gap allowance permits.
"""

from __future__ import annotations

from dataclasses import dataclass

from greendc.config import ModbusProfile, ModbusRegister
from greendc.registers import decode, encode

__all__ = ["MAX_READ_REGISTERS", "Read", "decode", "encode", "plan_reads"]

MAX_READ_REGISTERS = 125  # the Modbus limit for one read of holding or input registers


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
