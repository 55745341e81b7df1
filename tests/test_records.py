"""Records: validation errors name file, line and field; appending is line-atomic; torn tails are repaired."""

import json
import signal
import subprocess
import sys
import time

import pytest

from forkctl.records import (JsonlAppender, Question, RecordError, Sample, TraceSet, read_records, repair_tail,
                             write_records)


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def test_questions_round_trip_and_keep_extra_fields(tmp_path):
    p = tmp_path / "q.jsonl"
    write_lines(p, [json.dumps({"id": 7, "problem": "1+1?", "answer": 2, "subject": "arith"})])
    [q] = read_records(p, Question)
    assert (q.id, q.answer, q.extra) == ("7", "2", {"subject": "arith"})
    assert q.to_dict()["subject"] == "arith"


@pytest.mark.parametrize("line,field,problem", [
    ('{"id": "a", "answer": "1"}', "problem", "missing"),
    ('{"id": "a", "problem": 3}', "problem", "expected string, got integer"),
    ('{"id": "a", "problem": "  "}', "problem", "empty"),
    ('{"id": true, "problem": "x"}', "id", "expected string or integer, got boolean"),
])
def test_bad_question_names_file_line_and_field(tmp_path, line, field, problem):
    p = tmp_path / "q.jsonl"
    write_lines(p, ['{"id": "ok", "problem": "fine"}', line])
    with pytest.raises(RecordError) as err:
        read_records(p, Question)
    assert str(err.value) == f"{p}:2: field '{field}': {problem}"


def test_invalid_json_names_line(tmp_path):
    p = tmp_path / "s.jsonl"
    write_lines(p, ['{"question_id": "a", "sample": 0, "fork": null, "text": "x"}', "{not json"])
    with pytest.raises(RecordError, match=r"s.jsonl:2: invalid JSON"):
        read_records(p, Sample)


def test_sample_fork_must_be_positive(tmp_path):
    p = tmp_path / "s.jsonl"
    write_lines(p, ['{"question_id": "a", "sample": 0, "fork": 0, "text": "x"}'])
    with pytest.raises(RecordError, match="field 'fork': must be >= 1"):
        read_records(p, Sample)


def test_trace_set_errors_point_into_the_trace_list(tmp_path):
    p = tmp_path / "t.jsonl"
    write_lines(p, [json.dumps({"id": "q", "problem": "p", "answer": "1",
                                "traces": [{"teacher": "a", "text": "ok"}, {"teacher": "b"}]})])
    with pytest.raises(RecordError, match=r"t.jsonl:1: traces\[1\]: field 'text': missing"):
        read_records(p, TraceSet)
    write_lines(p, [json.dumps({"id": "q", "problem": "p", "traces": [{"teacher": "a", "text": " "}]})])
    with pytest.raises(RecordError, match="empty trace"):
        read_records(p, TraceSet)


def test_trace_set_round_trip(tmp_path):
    ts = TraceSet(id="q", problem="p", answer="3", traces=[])
    p = tmp_path / "t.jsonl"
    data = {"id": "q", "problem": "p", "answer": "3", "traces": [{"teacher": "r1", "text": "so \\boxed{3}"}]}
    write_lines(p, [json.dumps(data)])
    [ts] = read_records(p, TraceSet)
    assert ts.to_dict() == data


def test_repair_tail_drops_only_a_torn_last_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3')
    assert repair_tail(p) == len(b'{"a": 3')
    assert p.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
    assert repair_tail(p) == 0
    p.write_bytes(b'{"torn')
    repair_tail(p)
    assert p.read_bytes() == b""


def test_appender_appends_and_write_records_replaces(tmp_path):
    p = tmp_path / "s.jsonl"
    with JsonlAppender(p) as sink:
        sink.write(Sample("q", 0, 1, "t"))
    with JsonlAppender(p) as sink:
        sink.write(Sample("q", 1, 2, "u", extra={"strategy": "x"}))
    got = read_records(p, Sample)
    assert [s.key for s in got] == [("q", 0), ("q", 1)]
    assert got[1].extra == {"strategy": "x"}
    write_records(p, got[:1])
    assert len(read_records(p, Sample)) == 1
    assert not (tmp_path / "s.jsonl.tmp").exists()


WRITER = """
import sys
from forkctl.records import JsonlAppender
with JsonlAppender(sys.argv[1]) as sink:
    i = 0
    while True:
        sink.write({"i": i, "pad": "x" * 5000})
        i += 1
"""


def test_sigkill_tears_at_most_the_last_line_and_resume_drops_it(tmp_path):
    p = tmp_path / "k.jsonl"
    for _ in range(3):  # each writer resumes the file the killed one left
        before = p.stat().st_size if p.exists() else 0
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(p)])
        deadline = time.monotonic() + 30
        while (not p.exists() or p.stat().st_size < before + 50_000) and time.monotonic() < deadline:
            time.sleep(0.01)  # kill only once it is busy writing, however slow the machine
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    lines = p.read_bytes().split(b"\n")
    whole, tail = lines[:-1], lines[-1]  # tail: b"" unless the kill cut the last write short
    assert len(whole) > 10
    assert all(json.loads(line)["pad"] == "x" * 5000 for line in whole)
    assert [json.loads(line)["i"] for line in whole[:3]] == [0, 1, 2]
    assert repair_tail(p) == len(tail)
    assert p.read_bytes() == b"".join(line + b"\n" for line in whole)
