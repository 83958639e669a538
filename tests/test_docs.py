"""The README a newcomer reads: short, its links alive, and its results table what the result files say."""

import re

from bench.quality.tables import ROOT, update_docs

README = ROOT / "README.md"


def test_the_readme_stays_short_and_every_link_resolves():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert len(targets) >= 8
    missing = [t for t in targets if not t.startswith("http") and not (ROOT / t).exists()]
    assert not missing, missing
    indexed = set(re.findall(r"\| \[docs/(\w+\.md)\]", text))
    assert indexed == {p.name for p in (ROOT / "docs").glob("*.md")}, "every docs/ page in the README's index"


def test_the_readmes_results_table_is_the_committed_results_and_a_stale_copy_fails():
    text = README.read_text()
    assert text.count("<!-- quality_tables glance ") == 1
    regenerated, stale = update_docs(text)
    assert stale == [] and regenerated == text, f"run: python bench/quality/tables.py --docs README.md ({stale})"
    row = next(line for line in text.splitlines() if line.startswith("| clean pool | random |"))
    number = re.search(r"[+-]\d\.\d{3}", row).group()
    stale_copy = text.replace(row, row.replace(number, f"{float(number) + 0.001:+.3f}", 1))
    assert update_docs(stale_copy)[1] == ["glance " + " ".join(f"bench/results/{n}.json" for n in NAMES)]


NAMES = ("quality", "quality_noisy", "quality_fresh")
