"""The fast path's loop holds its dispatch twice (a second indirect-jump site for the
branch predictor); the two copies must stay identical."""
import re
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "hvemu" / "_core.pyx"


def test_the_two_copies_of_the_dispatch_are_identical():
    text = CORE.read_text()
    copies = re.findall(r"# >>> dispatch \(copy (\d) of 2.*?\n((?:(?!# <<< dispatch).*\n)*?)"
                        r"\s*# <<< dispatch", text)
    assert [n for n, _ in copies] == ["1", "2"]

    def body(block: str) -> list[str]:
        return [line for line in block.splitlines() if not line.strip().startswith("#")]
    first, second = (body(b) for _, b in copies)
    assert len(first) > 400 and first == second
