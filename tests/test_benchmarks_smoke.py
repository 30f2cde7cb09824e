"""The benchmark runner end to end on tiny shapes: JSON, markdown and PNG come out."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_sampling, run  # noqa: E402


def test_runner_writes_json_markdown_and_plot(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_sampling, "VOCABS", (1000,))
    monkeypatch.setattr(bench_sampling, "BATCHES", (1, 4))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # interpreted Triton would dominate
    result = run.main(["--family", "sampling", "--quick", "--out", str(tmp_path)])
    impls = {row["impl"] for row in result["rows"]}
    assert {"memory floor", "sort-based (vLLM native)", "transformers chain + multinomial", "torch reference"} <= impls
    assert all(row["median_us"] > 0 for row in result["rows"])
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == result["rows"]
    assert "| 1000 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "sampling.png").stat().st_size > 1000
