"""console: one line per error (markup never eats brackets), plain progress lines when output is not a terminal."""

from __future__ import annotations

from forkctl import console


def test_errors_are_one_line_and_keep_square_brackets(capsys):
    console.error("pip install 'forkctl[vllm]'\n  then [default: x]")
    assert capsys.readouterr().err == "error: pip install 'forkctl[vllm]' then [default: x]\n"


def test_progress_prints_plain_lines_off_a_terminal_and_ends_on_the_true_count(capsys, monkeypatch):
    monkeypatch.setattr(console, "PLAIN_PROGRESS_EVERY_S", 0.0)  # a line on every advance
    with console.progress("generating", 10) as bar:
        bar.advance(4)
        bar.advance(3, "failed 1")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["generating: 4/10", "generating: 7/10 (failed 1)", "generating: 7/10 (failed 1)"]


def test_disabled_progress_prints_nothing(capsys):
    with console.progress("x", 3, enabled=False) as bar:
        bar.advance(3)
    assert capsys.readouterr().err == ""
