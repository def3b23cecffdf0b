from recranker.report import markdown_table, metrics_rows


def test_markdown_table_rounds_floats_and_unions_columns() -> None:
    table = markdown_table([{"a": 0.123456, "b": "x"}, {"a": 2.0, "c": None}], digits=3)
    assert table.splitlines() == [
        "| a | b | c |",
        "|---|---|---|",
        "| 0.123 | x |  |",
        "| 2.000 |  |  |",
    ]


def test_metrics_rows_format_time_and_memory() -> None:
    summary = {"model": "bpr", "test": {"NDCG@10": 0.08}, "train_seconds": 62.3066, "peak_rss_mib": 442.375}
    (row,) = metrics_rows([summary])
    assert row == {"model": "bpr", "NDCG@10": 0.08, "train s": "62.3", "peak MiB": "442"}
    assert "| bpr | 0.0800 | 62.3 | 442 |" in markdown_table([row])
