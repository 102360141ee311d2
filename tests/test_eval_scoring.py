"""Scorers on hand-written records in each benchmark's published format (tests/fixtures/eval/cases.jsonl)."""

import json
from pathlib import Path

import pytest

from audior1.eval import benchmarks, extract, report
from audior1.eval.items import EvalItem
from audior1.eval.official import mmsu_script_letter, token_set_match
from audior1.eval.scoring import mmsu_letter, parse_score, parse_verdict

FIX = Path(__file__).parent / "fixtures" / "eval"
FILES = {"mmau": ["mmau.json"], "mmar": ["mmar.json"], "mmsu": ["mmsu.jsonl"],
         "spoken_mqa": ["spoken_mqa_multi_step_reasoning.jsonl", "spoken_mqa_short_digit.jsonl"],
         "big_bench_audio": ["big_bench_audio.jsonl"], "wild_speech": ["wild_speech.jsonl"],
         "synthetic": ["synthetic/manifest.jsonl"]}
CASES = [json.loads(line) for line in (FIX / "cases.jsonl").read_text().splitlines() if line.strip()]


def load(bench: str) -> dict:
    mod = benchmarks.get(bench)
    return {item.id: item for f in FILES[bench] for item in mod.load(FIX / f)}


@pytest.mark.parametrize("case", CASES, ids=[f"{c['bench']}:{c['note'][:40]}" for c in CASES])
def test_fixture_case(case):
    mod = benchmarks.get(case["bench"])
    item = load(case["bench"])[case["id"]]
    ex = extract.post_think(case["output"])
    scores, _ = mod.score(item, ex.answer, given_answer=ex.given)
    assert ex.parseable == case["parseable"]
    assert scores == case["expect"], case["note"]


def test_token_set_rule_as_written():
    choices = ["thunder", "a dog barking", "a car horn", "rain on a roof"]
    assert token_set_match("thunder", "thunder", choices)
    assert not token_set_match("A. thunder", "thunder", choices)         # 'a' is a wrong option's word
    assert not token_set_match("", "thunder", choices)                   # empty prediction → wrong
    assert not token_set_match("   ", "thunder", choices)
    assert not token_set_match(None, "thunder", choices)
    assert token_set_match("a dog barking", "a dog barking", choices)    # 'a' is in A, so not in W


def test_mmsu_strict_letter_rule():
    """`strict`'s character test (ours): the item's letters only, an empty answer parsed (and wrong)."""
    assert mmsu_letter("C") == ("C", True)
    assert mmsu_letter(" The answer is\nA. ") == ("A", True)            # newlines removed, second-to-last
    assert mmsu_letter("") == ("", True)
    assert mmsu_letter("cough") == (None, False)
    assert mmsu_letter("C", n_choices=2) == (None, False)              # the script would read C (A-D always)


@pytest.mark.parametrize("reply, verdict", [
    ("CORRECT", True), ("INCORRECT", False), ("correct", True), ("**CORRECT**", True), ("Correct.", True),
    (" INCORRECT\n", False), ("The answer is CORRECT", None), ("NOT CORRECT", None), ("", None), (None, None),
])
def test_verdicts_compare_exactly(reply, verdict):
    assert parse_verdict(reply) is verdict


@pytest.mark.parametrize("reply, score", [
    ("Strengths: ...\nWeaknesses: ...\nScore: 7", 7.0), ("...\nScore: [8]", 8.0), ("...\n**Score:** 9", 9.0),
    ("Score: 3\nmore analysis\nScore: 6", 6.0), ("Score: 11", None), ("no score at all", None),
    ("the score: 5 would be fair\nI give it", None),
])
def test_score_lines(reply, score):
    assert parse_score(reply) == score


class StubJudge:
    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def ask_runs(self, **fields):
        self.calls.append(fields)
        return list(self.replies)


def test_big_bench_audio_judge_scoring():
    mod, items = benchmarks.get("big_bench_audio"), load("big_bench_audio")
    judge = StubJudge(["CORRECT", "INCORRECT", "Correct."])
    scores, details = mod.score(items["2"], "7", judge, given_answer="7")
    assert scores == {"judge": pytest.approx(2 / 3)} and details["verdicts"] == ["CORRECT", "INCORRECT", "CORRECT"]
    assert judge.calls[0]["candidate_answer"] == "7" and judge.calls[0]["official_answer"] == "7"
    scores, details = mod.score(items["2"], "7", StubJudge(["INCORRECT"] * 3), given_answer="7")
    assert scores == {"judge": 0.0}
    scores, details = mod.score(items["2"], "7", StubJudge(["I think it is CORRECT"] * 3), given_answer="7")
    assert scores == {"judge": 0.0} and details["judge_invalid"] == 3
    lazy = StubJudge(["CORRECT"] * 3)
    assert mod.score(items["2"], None, lazy, given_answer=None)[0] == {"judge": 0.0}
    assert not lazy.calls                                                             # unparseable: no judge call


def test_wild_speech_judge_scoring():
    mod, items = benchmarks.get("wild_speech"), load("wild_speech")
    item = items["a1b2c3:original"]
    judge = StubJudge(["analysis\nScore: 8"])
    scores, details = mod.score(item, "Try overnight oats.", judge, given_answer="Try overnight oats.")
    assert scores == {"judge": pytest.approx(0.8)}
    assert "Suggests at least one breakfast" in judge.calls[0]["checklist"]
    assert "Correctness is essential" in judge.calls[0]["checklist"]               # general + per-query
    assert mod.score(item, None, judge, given_answer=None)[0] == {"judge": pytest.approx(0.1)}   # no answer: 1
    assert mod.score(item, "x", StubJudge(["no score"]), given_answer="x")[0] == {"judge": None}  # unreadable


def test_synthetic_scoring():
    mod, items = benchmarks.get("synthetic"), load("synthetic")

    def score(item_id, answer):                          # an answer without wrappers: as given = as stripped
        return mod.score(items[item_id], answer, given_answer=answer)[0]

    assert score("pitch-0001", "A") == {"exact": 1.0, "normalised": 1.0, "official-raw": 0.0}
    assert score("count-0002", "There were 3 beeps.") == {"exact": 1.0}
    assert score("count-0002", "three") == {"exact": 0.0}
    assert score("loudness-0003", "The high beep.") == {"exact": 1.0, "normalised": 1.0, "official-raw": 1.0}
    assert score("loudness-0003", "A") == {"exact": 0.0, "normalised": 0.0, "official-raw": 0.0}


def _records(item_ids, answers_by_sample, scores_by_answer):
    out = []
    for item_id, answers in zip(item_ids, answers_by_sample):
        for s, a in enumerate(answers):
            out.append({"id": item_id, "sample": s, "answer": a, "parseable": a is not None, "n_think_close": 1,
                        "scores": {"normalised": scores_by_answer[item_id](a), "official-raw": 0.0},
                        "reasoning_tokens": 10, "reasoning": "r", "latency_s": 0.1, "details": {}})
    return out


def test_pass_at_1_and_majority_and_missing_rows():
    mod, items = benchmarks.get("mmau"), load("mmau")
    ids = ["59a98d10-a56c-4ae3-9a8d-bd16b141a70c", "fixture-voice-source"]
    chosen = [items[i] for i in ids]
    right = {ids[0]: lambda a: float(a == "B"), ids[1]: lambda a: float(a == "Man")}
    recs = _records(ids, [["B", "B", "C"], ["Woman", "Man", "Woman"]], right)
    config = {"sampling": {"n": 3}, "benchmark": "mmau"}
    s = report.summarize(mod, chosen, recs, config)
    m = s["metrics"]["normalised"]
    assert m["pass@1"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m["majority@3"] == pytest.approx(0.5)                   # B wins item 1, Woman wins item 2
    # a row without a prediction counts as wrong and is reported
    s = report.summarize(mod, chosen, [r for r in recs if not (r["id"] == ids[0] and r["sample"] == 0)], config)
    assert s["counts"]["no_prediction"] == 1
    assert s["metrics"]["normalised"]["pass@1"] == pytest.approx((1 / 3 + 1 / 3) / 2)


def test_mmsu_official_drops_and_counts():
    mod, items = benchmarks.get("mmsu"), load("mmsu")
    recs = []
    for i, (item_id, ans) in enumerate([("vocalsound_0001", "C"), ("emotion_0002", "not sure")]):
        scores, _ = mod.score(items[item_id], ans, given_answer=ans)
        recs.append({"id": item_id, "sample": 0, "answer": ans, "parseable": True, "n_think_close": 1,
                     "scores": scores, "reasoning": "", "latency_s": 0.0, "details": {}})
    s = report.summarize(mod, [items["vocalsound_0001"], items["emotion_0002"]], recs, {"sampling": {"n": 1}})
    assert s["metrics"]["official"] == {"pass@1": 1.0, "n": 1, "excluded": 1, "excluded_samples": 1}
    assert s["metrics"]["strict"]["pass@1"] == 0.5


# ---- official-raw is the rule on the answer as given; normalised reads answer statements -------------------
# Every verdict below is worked out by hand from the rules in docs/eval.md (the comment shows the token sets).

DOG = EvalItem("dog", [], "a dog barking", ["a dog barking", "a cat meowing", "rain", "thunder"])
SOLO = EvalItem("solo", [], "Solo voice", ["Call and response", "Solo voice"])


@pytest.mark.parametrize("bench", ["mmau", "mmar", "synthetic"])
@pytest.mark.parametrize("output, normalised, raw", [
    # given "<RESPONSE>Solo voice</RESPONSE>": P = {response, solo, voice}, A = {solo, voice},
    # W = tok("Call and response") − A = {call, and, response}; P ∩ W = {response} → raw wrong.
    # The normalised reading strips the wrapper: P = A → right.
    ("r\n</think>\n<RESPONSE>Solo voice</RESPONSE>", 1.0, 0.0),
    # given "<answer>B</answer>": P = {answer, b} lacks "solo" → raw wrong; normalised: B → "Solo voice".
    ("r\n</think>\n<answer>B</answer>", 1.0, 0.0),
    # no wrapper: both readings see "Solo voice".
    ("r\n</think>\nSolo voice", 1.0, 1.0),
    # never closed: no answer, wrong in both whatever follows.
    ("r <RESPONSE>Solo voice</RESPONSE>", 0.0, 0.0),
])
def test_official_raw_scores_the_answer_as_given(bench, output, normalised, raw):
    ex = extract.post_think(output)
    given = output.split("</think>", 1)[1].strip() if ex.parseable else None    # the text after the block
    assert ex.given == given
    scores, _ = benchmarks.get(bench).score(SOLO, ex.answer, given_answer=ex.given)
    assert (scores["normalised"], scores["official-raw"]) == (normalised, raw)


def test_official_columns_read_only_the_given_answer():
    """The official column reads `given_answer` and nothing else: a caller cannot leave it out (it would
    otherwise fall back on an already-normalised answer), and the stripped `answer` never leaks into it."""
    mmau = benchmarks.get("mmau")
    with pytest.raises(TypeError, match="given_answer"):
        mmau.score(SOLO, "Solo voice")
    assert mmau.score(SOLO, "Solo voice", given_answer="<answer>B</answer>")[0] == {"normalised": 1.0,
                                                                                     "official-raw": 0.0}
    assert mmau.score(SOLO, None, given_answer=None)[0] == {"normalised": 0.0, "official-raw": 0.0}


@pytest.mark.parametrize("answer, normalised, raw", [
    # A = {a, dog, barking}; W = {cat, meowing, rain, thunder}.
    ("The answer is A.", 1.0, 0.0),          # normalised: letter A → "a dog barking"; raw P = {the, answer, is, a}
    ("Answer: A", 1.0, 0.0),
    ("The answer is (A).", 1.0, 0.0),
    ("Option A.", 1.0, 0.0),
    ("The correct answer is A, a dog barking.", 1.0, 1.0),   # raw P ⊇ A and P ∩ W = ∅
    ("The answer is C.", 0.0, 0.0),          # normalised: "rain", A ⊄ {rain}
    ("The answer is I.", 0.0, 0.0),          # only four options: "I" is no letter here
    ("The answer is A because it barks", 0.0, 0.0),   # "A" + words is read as text; P lacks dog, barking
    ("the answer is a dog barking.", 1.0, 1.0),       # text: P = {the, answer, is, a, dog, barking}
])
def test_normalised_reads_answer_statements(answer, normalised, raw):
    scores, _ = benchmarks.get("mmau").score(DOG, answer, given_answer=answer)
    assert (scores["normalised"], scores["official-raw"]) == (normalised, raw)


@pytest.mark.parametrize("statement", ["The answer is A.", "The answer is B.", "The correct answer is C.",
                                       "The answer is D!"])
def test_normalised_and_mmsu_official_read_statements_alike(statement):
    """MMSU's script reads the second-to-last character of "The answer is A."; the normalised reading takes
    the same letter from the same statements."""
    index, how = extract.option_index(statement, ["laugh", "burp", "cough", "yawn"])
    assert how == "answer_phrase" and mmsu_script_letter(statement) == ("ABCD"[index], "read")


@pytest.mark.parametrize("answer, script_reads, scores", [
    # "(C)." ends in ")." : no letter first or second-to-last → the script skips the row (None).
    ("The answer is (C).", (None, "dropped"), {"strict": 1.0, "official": None}),
    # "Answer: C." starts with "A": the script reads A (laugh, wrong).
    ("Answer: C.", ("A", "read"), {"strict": 1.0, "official": 0.0}),
    # "answer: C" : 'a' is lower case and the second-to-last is ' ' → skipped.
    ("answer: C", (None, "dropped"), {"strict": 1.0, "official": None}),
    ("The answer is A.", ("A", "read"), {"strict": 0.0, "official": 0.0}),
])
def test_mmsu_strict_reads_statements_the_official_column_does_not(answer, script_reads, scores):
    """`strict` (ours) turns the answer into a bare letter first, so each statement is read as the letter it
    names (C = cough, the right option); `official` reads the characters where the script does. (Until issue
    18 `official` also read the bare letter, which made it more generous than the script.)"""
    item = load("mmsu")["vocalsound_0001"]
    assert mmsu_script_letter(answer) == script_reads
    assert benchmarks.get("mmsu").score(item, answer, given_answer=answer)[0] == scores


def test_letter_followed_by_option_text_matches_whole_words_longest_first():
    """"The answer is A dog barking" names an option by its text; with "A dog" and "A dog barking" both
    offered it is the longer one, and "A dog bark" (part of the word "barks") names nothing."""
    assert extract.option_index("The answer is A dog barking", ["A dog", "A dog barking", "rain"]) == (
        1, "answer_phrase_text")
    assert extract.option_index("The answer is A dog barks", ["A dog bark", "rain"]) == (None, "text")
