"""bench/quality/cache.py: a run packed alone as it finishes comes back on a fresh checkout, and git keeps it."""


def test_a_finished_run_is_packed_alone_and_a_fresh_checkout_gets_it_back(tmp_path):
    """One run's files from the packed list into a part of its own; a part restores what the variant lacks, and
    (right after the main pack was unpacked) replaces the main pack's older copy."""
    from bench.quality.cache import pack_part, run_patterns, unpack_parts

    variant, parts = tmp_path / "noisy", tmp_path / "cache" / "runs"
    run = variant / "runs" / "random-s45"
    run.mkdir(parents=True)
    for name in ("config.yaml", "eval_items.json", "selected.parquet", "model.safetensors"):
        (run / name).write_text(name)
    (variant / "runs" / "random-s46").mkdir()
    (variant / "runs" / "random-s46" / "eval_items.json").write_text("another run")
    assert "runs-fresh/random-s45/eval_items.json" not in run_patterns("runs", "random-s45")
    pack_part(variant, parts, "random-s45", run_patterns("runs", "random-s45"))

    fresh = tmp_path / "fresh"
    unpack_parts(parts, fresh)
    got = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    assert got == [f"runs/random-s45/{n}" for n in ("config.yaml", "eval_items.json", "selected.parquet")]
    (fresh / "runs" / "random-s45" / "eval_items.json").write_text("older, from the main pack")
    unpack_parts(parts, fresh)  # every file is there: left as it is
    assert (fresh / "runs" / "random-s45" / "eval_items.json").read_text() == "older, from the main pack"
    unpack_parts(parts, fresh, every=True)
    assert (fresh / "runs" / "random-s45" / "eval_items.json").read_text() == "eval_items.json"


def test_the_per_run_packs_are_not_ignored_by_git():
    """A part pack left out of commits is lost with the session's checkout, as 13 runs once were."""
    import shutil
    import subprocess

    import pytest

    from bench.quality.cache import CACHE

    root = CACHE.parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for runs in ("runs", "runs-fresh"):
        part = CACHE.relative_to(root) / "quality-cpu-noisy" / runs / "probe.tar.gz"
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", str(part)], cwd=root)
        assert ignored.returncode == 1, f"{part} is ignored by .gitignore"
