import json

import pytest

from recranker.artifacts import Stage, atomic_dir, atomic_write, fingerprint, read_json, write_json


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


def test_atomic_dir_replaces_the_folder_only_when_complete(tmp_path) -> None:
    target = tmp_path / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "b.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    with atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]


def test_a_resumable_stage_keeps_an_unfinished_run_with_the_same_inputs(tmp_path) -> None:
    stage = Stage(tmp_path, "tune", inputs="a")
    assert stage.resume_or_start() is False
    (stage.path / "checkpoint-2").mkdir()
    assert Stage(tmp_path, "tune", inputs="a").resume_or_start() is True
    assert (stage.path / "checkpoint-2").exists()
    assert Stage(tmp_path, "tune", inputs="b").resume_or_start() is False  # other inputs: start over
    assert not (stage.path / "checkpoint-2").exists()
    finished = Stage(tmp_path, "tune", inputs="b")
    finished.finish()
    (stage.path / "checkpoint-9").mkdir()
    assert finished.resume_or_start() is False  # a finished stage is never resumed


# ------------------------------------------------------------------------------ the run lock
def test_a_second_writer_gets_one_message_naming_the_holder(tmp_path, hold) -> None:
    from recranker.artifacts import RunInUseError, run_lock

    proc = hold(tmp_path / "run")
    with pytest.raises(RunInUseError) as err:
        with run_lock(tmp_path / "run"):
            pass
    message = str(err.value)
    assert message.startswith(f"{(tmp_path / 'run').resolve()}: in use by process {proc.pid} on ")
    assert "run again with --wait" in message and "\n" not in message


def test_a_killed_holder_never_blocks_the_next_run(tmp_path, hold) -> None:
    from recranker.artifacts import run_lock

    proc = hold(tmp_path / "run")
    proc.kill()  # SIGKILL: no cleanup of its own
    proc.wait()
    assert (tmp_path / "run" / ".lock").exists()
    with run_lock(tmp_path / "run"):
        pass


def test_wait_queues_behind_the_holder(tmp_path, hold) -> None:
    import threading

    from recranker.artifacts import run_lock

    proc = hold(tmp_path / "run")
    threading.Timer(0.3, lambda: (proc.stdin.write("go\n"), proc.stdin.flush())).start()
    with run_lock(tmp_path / "run", wait=True):
        assert proc.stdout.readline().strip() == "released"  # we hold it only once the holder let go
    assert proc.wait(timeout=30) == 0


def test_the_lock_is_reentrant_and_leaves_no_empty_run_behind(tmp_path) -> None:
    from recranker.artifacts import run_lock

    run = tmp_path / "runs" / "x"
    with pytest.raises(ValueError, match="bad input"):
        with run_lock(run):
            with run_lock(run):  # nested calls of one process share the lock
                raise ValueError("bad input")
    assert not (tmp_path / "runs").exists()
    with run_lock(run):
        (run / "split").mkdir()
    assert sorted(p.name for p in run.iterdir()) == [".lock", "split"]
