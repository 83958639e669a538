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


def test_every_generated_table_in_the_docs_is_the_committed_results():
    """Each `<!-- quality_tables KIND FILES -->` block of README and docs/ is what its generator writes from the
    result files now; a number changed by hand in one of them (the loop table here) is caught."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    marked = {p.name: p.read_text() for p in pages if "<!-- quality_tables " in p.read_text()}
    assert {"README.md", "BENCHMARKS.md", "SCALING.md"} <= set(marked)
    for name, text in marked.items():
        assert update_docs(text)[1] == [], f"run: python bench/quality/tables.py --docs {name}"
    text = marked["BENCHMARKS.md"]
    start = text.index("<!-- quality_tables loop ")
    row = next(line for line in text[start:].splitlines() if line.startswith("|") and re.search(r"\d\.\d", line))
    number = re.search(r"\d+\.\d+", row).group()
    stale_copy = text.replace(row, row.replace(number, number + "1", 1), 1)
    assert update_docs(stale_copy)[1] == ["loop bench/results/loop.json"]


# ------------------------------------------------------------------ "not measured" that a result file contradicts

STALE = re.compile(r"\bnot (?:yet )?(?:measured|run)\b", re.I)
SETTING = re.compile(r"`([a-z_]+\.[a-z_]+)(?:\s*[:=]\s*([\w.+-]+))?`")
TOKEN = re.compile(r"`([\w.+-]+)`")


def _units(text: str):
    """(line number, text, table header cells or None) of each table row and each sentence of prose, generated
    tables left out."""
    text = re.sub(
        r"<!-- quality_tables .*?<!-- /quality_tables -->", lambda m: "\n" * m.group().count("\n"), text, flags=re.S
    )
    lines, paragraph, start, header = text.splitlines() + [""], [], 0, None
    for number, line in enumerate(lines, 1):
        if line.startswith("|"):
            if number < len(lines) and lines[number].startswith("|---"):
                header = line.split("|")
            yield number, line, header
            continue
        header = None
        if line.strip():
            paragraph, start = paragraph + [line], start or number
            continue
        for sentence in re.split(r"(?<=[.;])\s+", " ".join(paragraph)):
            yield start, sentence, None
        paragraph, start = [], 0


def _runs_by_setting() -> dict[str, list[tuple[str, str]]]:
    """'key=value' of every switch a committed quality result has runs of → (result file, method)."""
    import json

    from bench.quality.regimes import method_settings

    runs: dict[str, list[tuple[str, str]]] = {}
    for path in sorted((ROOT / "bench" / "results").glob("quality*.json")):
        if path.name.endswith("_queue.json"):  # the queue's scratch file: gitignored, never committed
            continue
        for method in json.loads(path.read_text()).get("methods") or {}:
            for key in method_settings(method)[1]:
                runs.setdefault(key, []).append((path.name, method))
    return runs


def _pool_files(header: list[str] | None, unit: str, at: int):
    """Which result files a table cell speaks of: its column's pool (clean, or noisy/planted), else all."""
    if header is None:
        return lambda name: True
    column = header[unit[:at].count("|")].lower() if unit[:at].count("|") < len(header) else ""
    if "clean" in column:
        return lambda name: name in ("quality.json", "quality_fresh.json")
    if "noisy" in column or "planted" in column:
        return lambda name: name.startswith("quality_noisy")
    return lambda name: True


def stale_claims(text: str, runs: dict) -> list[str]:
    """Each "not measured / not run" whose switch a result file (of the column's pool, in a table) has runs of.
    The switch: the backticked values before the phrase in its clause (`saturating`), else the setting of the
    sentence or of the row's first cell (`cluster.end_nll_above`, `selection.rank_by: total`, or the value after
    a →)."""
    found = []
    for number, unit, header in _units(text):
        for match in STALE.finditer(unit):
            clause = re.split(r"[;|(]", unit[: match.start()])[-1]
            subject = unit.split("|")[1] if header else unit  # a row speaks of its first cell's switch
            keys = {k for k, _ in SETTING.findall(subject)}
            values = set(TOKEN.findall(clause)) - keys
            if not values:
                values = set(re.findall(r"→ `([\w.+-]+)`", subject)) | {v for _, v in SETTING.findall(subject) if v}
            if not keys and not values:
                continue
            in_pool = _pool_files(header, unit, match.start())
            hits = [
                f"{name} has {method} ({setting})"
                for setting, where in runs.items()
                for name, method in where
                if in_pool(name)
                and (not keys or setting.split("=")[0] in keys)
                and (not values or setting.split("=", 1)[1] in values)
            ]
            if hits:
                found.append(f"line {number}: '{match.group()}' but {hits[0]}")
    return found


def test_no_doc_says_not_measured_of_a_switch_a_result_file_has_runs_of():
    """README and docs/ never call a switch unmeasured or not run once a committed quality result holds a run of
    it; and the check fails on a copy that does."""
    runs = _runs_by_setting()
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        assert not stale_claims(path.read_text(), runs), (path.name, stale_claims(path.read_text(), runs))
    planted = "The relative gate (`cluster.end_z_above: 3.5`) is not yet measured.\n"
    assert stale_claims(planted, runs) and stale_claims("| `selection.trim_top: 0.15` | neither | not run |", runs)
    assert not stale_claims("| `selection.rank_by: mean` | neither | not run |", runs)  # no such run: fine
