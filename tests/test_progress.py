"""Progress inside a long scoring unit: a line at most every interval, with rows, tokens/s and the unit's ETA."""

from lead_ray.console import UnitProgress


def test_a_unit_reports_its_pass_rows_rate_and_eta_at_most_once_per_interval(capsys):
    now = [0.0]
    progress = UnitProgress("score unit-00003", rows=100, passes=2, every=30, clock=lambda: now[0])
    progress.start_pass("base model")
    now[0] = 10.0
    progress.advance(50, 1_000)
    assert progress.lines == []  # 10 s in: quiet
    now[0] = 31.0
    progress.advance(50, 1_000)
    progress.start_pass("prompt embeddings")
    now[0] = 40.0
    progress.advance(50)  # 9 s after the last line: quiet
    now[0] = 62.0
    progress.advance(25)
    assert progress.lines == [
        "[lead-ray] score unit-00003: pass 1/2 (base model) 100/100 rows, 65 tokens/s, 31 s, unit ETA 31 s",
        "[lead-ray] score unit-00003: pass 2/2 (prompt embeddings) 75/100 rows, 32 tokens/s, 62 s, unit ETA 9 s",
    ]
    assert capsys.readouterr().out.splitlines() == progress.lines
