"""The train benchmark family end to end on tiny shapes: both implementations, every phase, compaction."""

from benchmarks import bench_train, run


def test_train_family(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_train, "setups", lambda mode, device: [bench_train.Setup("tiny-llama", 2, 2, 4, 2, 8,
                                                                                        12, 1)])
    monkeypatch.setattr(bench_train, "PROMPT_TOKENS", 6)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    rows = run.main(["--family", "train", "--quick", "--out", str(tmp_path)])["rows"]
    step = {(r["phase"], r["impl"]) for r in rows if r["op"] == "rl step"}
    assert step == {(p, i) for p in (*bench_train.PHASES, "whole step") for i in (bench_train.MTA, bench_train.PLAIN)}
    tail = [r for r in rows if r["op"] == "rollout long-tail"]
    assert [r["impl"] for r in tail] == ["plain batch", "compact_every=16", "compact_every=8", "compact_every=4"]
    assert all(r["median_us"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    assert "| whole step |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "train.png").stat().st_size > 1000


def test_tail_lengths_are_long_tailed():
    lengths = bench_train.tail_lengths(64, 256)
    assert lengths.count(256) >= 8 and sorted(lengths)[32] < 64 and min(lengths) >= 1
