import pytest

from recranker.prompts.templates import DOMAINS, TASKS, TemplateError, load_template, load_templates, template_path

GOOD = """task: pointwise
domain: movies
placeholders: [history, target, hint]
system: sys
user: |-
  History:
  {history}
  Rate "{target}".
  {hint}
  Answer 1-5.
history_item: "- {title}: {rating}"
empty_history: none
hint: "Hint: {rating}"
answer: "{rating}"
"""


def write(tmp_path, text, name="pointwise.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_packaged_template_loads(domain) -> None:
    templates = load_templates(domain)
    assert set(templates) == set(TASKS)
    for task, template in templates.items():
        assert template.task == task and template.domain == domain


def test_render_user_drops_an_empty_hint_line(tmp_path) -> None:
    template = load_template(write(tmp_path, GOOD))
    with_hint = template.render_user(history="- a: 4", target="B", hint="Hint: 3.0")
    without = template.render_user(history="- a: 4", target="B", hint="")
    assert with_hint == 'History:\n- a: 4\nRate "B".\nHint: 3.0\nAnswer 1-5.'
    assert without == 'History:\n- a: 4\nRate "B".\nAnswer 1-5.'


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('Rate "{target}".', 'Rate "{target}" {colour}.', 'line 5: user: unknown placeholder {colour}'),
        ("placeholders: [history, target, hint]", "placeholders: [history, target]", "line 5: the user text uses {hint}, which is not declared"),
        ("placeholders: [history, target, hint]", "placeholders: [history, target, hint, extra]", "line 3: placeholder {extra} is declared but"),
        ('Rate "{target}".', "Rate it.", "line 5: user: missing placeholder {target}"),
        ('answer: "{rating}"', 'answer: "five"', "line 14: answer: missing placeholder {rating}"),
        ('hint: "Hint: {rating}"', 'hint: "Hint: {rating"', "line 13: hint: bad placeholder syntax"),
        ("empty_history: none\n", "", "missing key 'empty_history'"),
        ("task: pointwise", "task: ranking", "line 1: task must be one of"),
        ("domain: movies", "domain: movies\nstyle: fancy", "line 3: unknown key 'style'"),
        ("system: sys", "system: [a, b]", "line 4: system must be text"),
    ],
)
def test_bad_templates_name_file_line_and_problem(tmp_path, old, new, message) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(TemplateError) as info:
        load_template(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value), str(info.value)


def test_bad_yaml_names_its_line(tmp_path) -> None:
    path = write(tmp_path, GOOD.replace("system: sys", "system: : :\n  - x"))
    with pytest.raises(TemplateError, match=r"line \d+: not valid YAML"):
        load_template(path)


def test_a_file_for_another_task_is_refused(tmp_path) -> None:
    (tmp_path / "movies").mkdir()
    write(tmp_path / "movies", GOOD, "pairwise.yaml")
    with pytest.raises(TemplateError, match="named for task 'pairwise' but declares task 'pointwise'"):
        load_templates("movies", tmp_path, ("pairwise",))


def test_user_templates_directory_replaces_the_packaged_ones(tmp_path) -> None:
    (tmp_path / "movies").mkdir()
    write(tmp_path / "movies", GOOD)
    templates = load_templates("movies", tmp_path, ("pointwise",))
    assert templates["pointwise"].pieces["system"] == "sys"
    assert template_path("pointwise", "movies", tmp_path) == tmp_path / "movies" / "pointwise.yaml"


def test_unknown_domain_is_refused() -> None:
    with pytest.raises(TemplateError, match="unknown domain 'cars'"):
        load_templates("cars")


@pytest.mark.parametrize("domain", ["movies", "books", "products"])
def test_no_listwise_line_but_the_candidates_starts_with_a_lone_letter(domain) -> None:
    """A hint line "A collaborative-filtering model ..." right before the answer primed the model to
    answer "A" first; no line other than the candidate lines may start with an identifier-like word."""
    import re

    from recranker.prompts.templates import load_templates

    t = load_templates(domain)["listwise"]
    candidates = "\n".join(t.render("candidate_item", id=letter, title="x") for letter in "AB")
    user = t.render_user(history=t.render("history_item", title="y", rating="4"), candidates=candidates, count=2,
                         top=2, hint=t.render("hint", order="B, A"))
    others = [line for line in user.split("\n") + [t.pieces["system"]] if line not in candidates.split("\n")]
    assert not [line for line in others if re.match(r"^[A-Z]\b(?![.)])", line)]
