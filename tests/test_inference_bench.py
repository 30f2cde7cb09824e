"""The ``inference`` benchmark family end to end on a tiny setup: rows, table and plot."""

from benchmarks import bench_inference, run


def test_inference_family(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_inference, "setups", lambda mode, device: [bench_inference.Setup("tiny-llama", 3, 4, 2, 3, 2)])
    monkeypatch.setattr(bench_inference, "N_SAMPLES", 3)
    monkeypatch.setattr(bench_inference, "SAMPLER_CALLS", 2)
    monkeypatch.setattr(bench_inference, "SAMPLER_REPEATS", 3)
    result = run.main(["--family", "inference", "--quick", "--out", str(tmp_path)])
    rows = {(r["case"], r["impl"]): r for r in result["rows"]}
    b = bench_inference
    assert set(rows) == {("self-consistency", b.BATCHED), ("self-consistency", b.SEPARATE),
                         *(("schedule (decode step)", i) for i in (b.FIXED, b.EDT, b.SAME, b.ESTIMATE)),
                         *(("schedule (sampler call)", i) for i in (b.FIXED, b.EDT, b.SAME, b.EDT_ONLY))}
    assert all(r["median_us"] > 0 and r["per_us"] > 0 for r in rows.values())
    assert rows[("self-consistency", bench_inference.SEPARATE)]["vs_baseline"] == 1.0
    assert "| schedule (decode step) |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "inference.png").stat().st_size > 1000
