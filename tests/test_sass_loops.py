"""megadelta.kernels.sass_loops finds the products' unit loops in SASS and
compares them with registers and constants blanked out (the disassembler it
needs on real builds is not in CI; these are hand-written listings in
cuobjdump's layout)."""

from __future__ import annotations

import random

from megadelta.kernels.sass_loops import blanked, differing_instructions, paired_loops, parse_sass, product_loops


def listing(body: list[str]) -> str:
    """cuobjdump -sass lines for the instructions, 16 bytes apart from 0."""
    return "\n".join(f"        /*{16 * i:04x}*/                   {text} ;   /* 0x000 */" for i, text in enumerate(body))


def unit_loop(start: int, registers: list[int]) -> list[str]:
    """A unit loop from instruction `start` on: a wait loop, 4 shared loads, 16 FMAs, the branch back."""
    r = registers
    wait = [f"LDS R{r[0]}, [R{r[1]}+0x10]", f"ISETP.NE.AND P0, PT, R{r[0]}, R{r[2]}, PT",
            f"@P0 BRA 0x{16 * start:x}"]
    loads = [f"LDS.128 R{r[3] + 4 * k}, [R{r[1]}+0x{64 * k:x}]" for k in range(4)]
    math = [f"FFMA R{r[4]}, R{r[3] + k}, R{r[5]}, R{r[4]}" for k in range(16)]
    return wait + loads + math + [f"BRA 0x{16 * start:x}"]


def kernel(registers: list[int], producer: list[str]) -> str:
    head = ["S2R R0, SR_TID.X", "MOV R1, 0x400"]
    return listing(head + unit_loop(len(head), registers) + producer + ["EXIT"])


def test_finds_the_unit_loop_not_its_wait_or_the_producer():
    producer_start = 2 + len(unit_loop(2, list(range(6))))
    producer = ["LDS R2, [R3]", "UBLKCP.S.G [UR4], [UR6], UR8, desc[UR10]",
                *["FFMA R4, R5, R6, R4"] * 16, *["LDS R7, [R8]"] * 4,
                f"BRA 0x{16 * producer_start:x}"]
    loops = product_loops(parse_sass(kernel(list(range(6)), producer)))
    assert len(loops) == 1
    assert loops[0][0].address == 16 * 2 and loops[0][-1].text.startswith("BRA")


def test_renamed_registers_compare_equal_and_a_reordering_does_not():
    rng = random.Random()
    names = rng.sample(range(8, 200), 6)
    a = product_loops(parse_sass(kernel(list(range(6)), [])))[0]
    b = product_loops(parse_sass(kernel(names, [])))[0]
    assert blanked(a) == blanked(b)
    body = unit_loop(2, list(range(6)))
    body[3], body[7] = body[7], body[3]   # a shared load moved behind the first FMAs
    c = product_loops(parse_sass(listing(["S2R R0, SR_TID.X", "MOV R1, 0x400", *body, "EXIT"])))[0]
    assert blanked(a) != blanked(c)


def test_moved_code_differs_only_by_what_moved_it():
    body = unit_loop(2, list(range(6)))
    plain = parse_sass(listing(["S2R R0, SR_TID.X", "MOV R1, 0x400", *body, "EXIT"]))
    pad = ["NANOSLEEP 0x0"] * 3
    padded = parse_sass(listing(["S2R R0, SR_TID.X", *pad, "MOV R1, 0x400", *unit_loop(5, list(range(6))), "EXIT"]))
    assert blanked(product_loops(plain)[0]) == blanked(product_loops(padded)[0])   # branch targets are blanked
    assert differing_instructions(plain, padded) == len(pad)
    assert differing_instructions(plain, plain) == 0
    swapped = parse_sass(listing(["MOV R1, 0x400", "S2R R0, SR_TID.X", *body, "EXIT"]))
    assert differing_instructions(plain, swapped) == 2


def test_an_added_loop_shifts_no_pairing_after_it():
    """Loops pair by their lengths in order: a loop that only one build has is
    reported on its side, and the loops after it still meet their own."""
    def fake(lengths):
        return [[None] * n for n in lengths]

    assert paired_loops(fake([10, 20, 30]), fake([10, 25, 20, 30])) == [(0, 0), (None, 1), (1, 2), (2, 3)]
    assert paired_loops(fake([10, 20, 30]), fake([10, 30])) == [(0, 0), (1, None), (2, 1)]
    assert paired_loops(fake([10, 21, 30]), fake([10, 22, 30])) == [(0, 0), (1, 1), (2, 2)]
