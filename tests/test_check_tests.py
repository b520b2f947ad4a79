"""scripts/check_tests.py: each pattern of a test that cannot fail is reported, a good test is not."""

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_tests", REPO / "scripts" / "check_tests.py")
check_tests = sys.modules.setdefault("check_tests", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(check_tests)


def findings(source, **other_files):
    """``(line, reason)`` of each finding in a test module ``tests/test_x.py`` holding ``source``."""
    sources = {"tests/test_x.py": textwrap.dedent(source)}
    sources.update({f"tests/{name}.py": textwrap.dedent(text) for name, text in other_files.items()})
    return [(f.line, f.reason) for f in check_tests.check_sources(sources)]


@pytest.mark.parametrize("body, line, needle", [
    ("x = compute()\n    assert True", 3, "true constant"),
    ("rows = generate()\n    assert all(r['text'] for r in rows)", 3, "`all(...)` over rows"),
    ("rows = generate()\n    assert all(rows)", 3, "`all(...)` over rows"),
    ("model = train()\n    assert all(p.grad is None for p in weights(model).values())", 3, "over weights(model)"),
    ("acc = evaluate()\n    assert 0 <= acc <= 1", 3, "range-only"),
    ("r = evaluate()\n    assert 0.0 <= r['acc'] <= 1.0 and 0 <= r['f1'] <= 1", 3, "range-only"),
    ("rs = evaluate()\n    assert len(rs) == 2\n    assert all(0 <= r['acc'] <= 1 for r in rs)", 4, "range-only"),
    ("r = select()\n    assert r['tau'] > 0 and 0 < r['coverage'] <= 1", 3, "range-only"),
    ("out = build()\n    assert out is not None", 3, "only check is `is not None`"),
    ("main(['fit'])", 1, "checks nothing"),
])
def test_each_pattern_is_reported_at_its_line(body, line, needle):
    found = findings(f"def test_it():\n    {body}\n")
    assert len(found) == 1 and found[0][0] == line and needle in found[0][1]


def test_the_issue_17_example_is_reported():
    found = findings("""
        def test_real_sampling(module, demos):
            rows = module.predict_step(batch, 0)
            stats = module.stats
            assert stats.attribute_replies == 2 and stats.invalid_json + stats.generation_replies == 2
            assert all(r["text"] for r in rows)
        """)
    assert found == [(6, "`all(...)` over rows, which no assertion shows to be non-empty (all([]) is true); "
                         "assert its length")]


@pytest.mark.parametrize("body", [
    "rows = generate()\n    assert len(rows) == 3 and all(r['text'] for r in rows)",
    "rows = generate()\n    assert [r['id'] for r in rows] == [0, 1]\n    assert all(r['text'] for r in rows)",
    "rows = generate()\n    assert rows\n    assert all(r['text'] for r in rows)",
    "steps = plan(); kinds = [s.kind for s in steps]\n    assert kinds == ['a'] * 3\n    assert all(s.ok for s in steps)",
    "w = net()\n    assert w.shape == (3, 4)\n    assert torch.all(w[w > 0] > 0)",
    "b = batch()\n    assert b.shape[0] == 8\n    assert all(x > 0 for x in b.tolist())",
    "keys = names()\n    assert any(k.startswith('a') for k in keys) and all(k for k in keys)",
    "assert all(x > 0 for x in (1, 2)) and all(i >= 0 for i in range(3))",
    "m = load()\n    assert all(p.grad is None for p in m.backbone.parameters())",
    "frozen = {k: v for k, v in load().model.state_dict().items()}\n    assert all(v is not None for v in frozen.values())",
    "acc = evaluate()\n    assert acc == pytest.approx(recompute())",
    "acc = evaluate()\n    assert 0 <= acc <= 1\n    assert acc == pytest.approx(0.5)",
    "with pytest.raises(ValueError):\n        parse('x')",
    "torch.testing.assert_close(f(), g())",
    "out = build()\n    assert out is not None\n    assert out.size == 3",
])
def test_a_good_test_is_not_reported(body):
    assert findings(f"import pytest\nimport torch\n\n\ndef test_it():\n    {body}\n") == []


def test_a_helper_that_asserts_counts_as_a_check_also_from_another_file():
    helpers = """
        def check_rows(rows):
            assert len(rows) == 2

        def check_twice(rows):
            check_rows(rows)
            check_rows(rows)

        def make_rows():
            return [1, 2]
        """
    assert findings("def test_a():\n    check_twice(make_rows())\n", helpers=helpers) == []
    assert findings("def test_a():\n    make_rows()\n", helpers=helpers) == [(1, "test_a checks nothing (no assert, "
                                                                           "pytest.raises or asserting helper)")]


def test_only_test_functions_of_test_modules_are_read():
    assert findings("def helper():\n    pass\n\n\nclass TestThing:\n    def test_m(self):\n        assert True\n") == [
        (7, "`assert` of a true constant always passes")]
    assert findings("def test_ok():\n    assert f() == 1\n", helpers="def test_like():\n    assert True\n") == []


def test_an_exemption_needs_a_reason():
    exempted = "def test_it():\n    acc = f()\n    assert 0 <= acc <= 1  # check_tests: ok bounded by construction\n"
    assert findings(exempted) == []
    assert findings("def test_it():\n    acc = f()\n    assert 0 <= acc <= 1  # check_tests: ok\n") == [
        (3, "`# check_tests: ok` needs a reason after it")]
    assert findings("def test_it():  # check_tests: ok smoke test: import must not raise\n    import x\n") == []


def test_command_line_lists_findings_and_sets_the_exit_status(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "test_bad.py").write_text("def test_a():\n    x = 1\n    assert 0 <= x <= 1\n")
    assert check_tests.main([str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{bad / 'test_bad.py'}:3: range-only check `0 <= x <= 1`; assert the value "
                                "(recompute it)"]
    assert "1 finding(s)" in err
    good = tmp_path / "good"
    good.mkdir()
    (good / "test_good.py").write_text("def test_a():\n    assert sum([1, 2]) == 3\n")
    assert check_tests.main([str(good)]) == 0 and capsys.readouterr().out == ""
    assert check_tests.main([str(tmp_path / "missing")]) == 2
    assert "error: " in capsys.readouterr().err


def test_unparseable_test_file_is_a_finding():
    found = findings("def test_it(:\n    pass\n")
    assert len(found) == 1 and found[0][0] == 1 and found[0][1].startswith("cannot parse")


def test_this_repository_s_tests_are_clean(capsys):
    assert check_tests.main([str(REPO / "tests")]) == 0, capsys.readouterr().out
