"""docs/ALGORITHM.md is the document the code cites: every `ALGORITHM.md §N` and `§10 Dn` it cites exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ALGORITHM.md"


def sections(text: str) -> set[str]:
    """'4.2' for '### 4.2 Difficulty: IFD', '10' for '## 10. Where ...', and 'D7' for a row '| D7 |'."""
    heads = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, flags=re.M))
    return heads | set(re.findall(r"^\| (D\d+) \|", text, flags=re.M))


def citations(text: str) -> set[str]:
    """Every section a text cites: ALGORITHM.md §4.2, §4.2–4.3 (both ends), §10 D14, D7 after a §10 citation."""
    cited = set()
    for ref in re.findall(r"ALGORITHM\.md[^\n]*", text):
        for a, b in re.findall(r"§(\d+(?:\.\d+)?)(?:–(\d+(?:\.\d+)?))?", ref):
            cited |= {a} | ({b} if b else set())
        cited |= set(re.findall(r"\bD\d+\b", ref))
    return cited


def test_every_cited_section_exists():
    have = sections(DOC.read_text())
    missing = {}
    for path in sorted((ROOT / "lead_ray").rglob("*.py")):
        gone = citations(path.read_text()) - have
        if gone:
            missing[str(path.relative_to(ROOT))] = sorted(gone)
    assert not missing, f"cited in the code but not in docs/ALGORITHM.md: {missing}"
    assert not [p for p in (ROOT / "lead_ray").rglob("*.py") if re.search(r"\bspec [§\d]", p.read_text())]


def test_the_check_sees_headings_rows_and_ranges():
    doc = "## 4. Offline\n### 4.2 IFD\n| D7 | cos |\n"
    assert sections(doc) == {"4", "4.2", "D7"}
    assert citations("(ALGORITHM.md §4.2–4.3; §10 D7, D8)") == {"4.2", "4.3", "10", "D7", "D8"}
    assert citations("no reference here, D7 alone") == set()
