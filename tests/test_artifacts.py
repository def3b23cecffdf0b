import json

import pytest

from recranker.artifacts import Stage, atomic_write, fingerprint, read_json, write_json


def test_atomic_write_leaves_nothing_on_error(tmp_path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_write_json_round_trips(tmp_path) -> None:
    write_json(tmp_path / "a" / "b.json", {"x": 1, "p": tmp_path})
    assert read_json(tmp_path / "a" / "b.json") == {"x": 1, "p": str(tmp_path)}


def test_stage_is_done_only_with_the_same_inputs(tmp_path) -> None:
    stage = Stage(tmp_path, "retrieval/pop", inputs=fingerprint({"m": 10}))
    assert not stage.done()
    stage.start()
    assert not stage.done()  # started, not finished: an interrupted stage runs again
    stage.finish({"seconds": 1.5})
    assert stage.done() and stage.info()["seconds"] == 1.5
    assert not Stage(tmp_path, "retrieval/pop", inputs=fingerprint({"m": 20})).done()
    stage.start()
    assert not stage.marker.exists()


def test_fingerprint_is_stable_and_order_free() -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert json.dumps(fingerprint(1)).count('"') == 2


def test_starting_a_stage_again_removes_the_files_of_the_earlier_run(tmp_path) -> None:
    stage = Stage(tmp_path, "prompts", inputs=fingerprint({"tasks": ["pointwise", "pairwise"]}))
    write_json(stage.start() / "pointwise.json", {})
    stage.finish()
    again = Stage(tmp_path, "prompts", inputs=fingerprint({"tasks": ["pairwise"]}))
    folder = again.start()
    assert list(folder.iterdir()) == [] and (tmp_path / "prompts").is_dir()
