"""The adversarial and paraphrased completions of `audior1.data.adversarial`: each corruption is wrong in the way
it claims to be and in no other, each paraphrase says what the reference says. No grounding filter is needed."""

import random
import re
from collections import defaultdict
from pathlib import Path

import pytest

from audior1.chat import THINK_END
from audior1.data import adversarial as adv
from audior1.data import fsdd, speech, synth

N_PER_FAMILY = 4
SEED = 7
# families whose chains state no value another referent of the item has (a chord's notes are one set; one voice,
# one noise): no moved_value for them
NO_MOVE = {"chord_quality", "trap_chord", "voice_pitch", "noise_colour", "fsdd_speaker"}
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # as in conftest
NUMBER_WORD = re.compile(r"\b(" + "|".join(adv.NUMBER_WORDS) + r")\b")


def families():
    return [t for t in synth.FAMILIES if speech.available() or not synth.FAMILIES[t].needs_speech]


@pytest.fixture(scope="module")
def pools(shared_data_or_none):
    """task -> a few items of that task, made in-process (the FSDD ones where the recordings are present)."""
    out = {t: [synth.make_item(t, "dev", SEED, i)[0] for i in range(N_PER_FAMILY)] for t in families()}
    if shared_data_or_none is not None:
        rec = shared_data_or_none / "fsdd" / "recordings"
        if rec.is_dir():
            for t in fsdd.FAMILIES:
                out[t] = [fsdd.make_item(t, "dev", SEED, i, recordings=str(rec))[0] for i in range(N_PER_FAMILY)]
    return out


@pytest.fixture(scope="module")
def shared_data_or_none():
    return SHARED_DATA if SHARED_DATA.is_dir() else None


@pytest.fixture(scope="module")
def cases(pools):
    """(item, case) for every case of every item, seeded per item."""
    out = []
    for items in pools.values():
        for it in items:
            for c in adv.all_cases(it, items, random.Random(f"test:{it['id']}")):
                out.append((it, c))
    return out


def of_kind(cases, kind):
    found = [(it, c) for it, c in cases if c.kind == kind]
    assert found, f"no {kind} case at all"
    return found


def numbers(text: str) -> list[float]:
    """Every number a text states, as digits or as a word, outside nothing: sorted."""
    text = NUMBER_WORD.sub(lambda m: str(adv.WORD_VALUE[m.group(1)]), text)
    return sorted(float(x) for x in re.findall(r"(?<![\w#.])-?\d+(?:\.\d+)?(?![\w#])|(?<=#)\d+|(?<=[A-G])\d+", text))


def meta_values(meta: dict, unit: str) -> list:
    """Every value of `unit` anywhere in `meta` (by key suffix), independent of the module's own fact list."""
    suffixes = {"hz": ("_hz",), "s": ("_sec", "_s"), "db": ("_dbfs", "_db"), "bpm": ("bpm",), "wps": ("_per_sec",),
                "note": ("note", "notes")}[unit]
    out = []

    def walk(d):
        if isinstance(d, dict):
            for k, v in d.items():
                if k.endswith(suffixes) and not isinstance(v, dict):
                    out.extend(v if isinstance(v, list) else [v])
                else:
                    walk(v)
        elif isinstance(d, list):
            for x in d:
                walk(x)
    walk(meta)
    return [v for v in out if v is not None and not isinstance(v, (list, dict))]


def test_completions_are_reasoning_then_think_end_then_answer(pools):
    it = pools["pitch_compare"][0]
    ref = adv.reference_case(it)
    assert ref.completion == f"{it['text_cot']}\n{THINK_END}\n{it['answer']}" and ref.expect == frozenset()
    sur = adv.surrogate_case(it)
    assert sur.reasoning == it["surrogate_cot"] and sur.answer == it["surrogate_answer"]
    assert sur.expect == {"surrogate"}


def test_every_family_gets_its_corruptions_and_paraphrases(cases):
    kinds = defaultdict(set)
    for it, c in cases:
        kinds[it["task"]].add(c.kind)
    for task, got in kinds.items():
        for k in ("reference", "surrogate", "flipped_conclusion", "flipped_conclusion_and_answer",
                  "surrogate_plus_fact", "borrowed", "synonyms"):
            assert k in got, (task, k)
        assert ("moved_value" in got) == (task not in NO_MOVE), (task, sorted(got))
    counting = [t for t in kinds if t in ("count_events", "word_count", "trap_count", "high_low_count")]
    assert counting and all({"wrong_noun_count", "numbers_as_words"} <= kinds[t] for t in counting)
    assert all("bare_count" in kinds[t] for t in ("count_events", "word_count", "trap_count") if t in kinds)


def test_moved_value_is_another_referents_value_beyond_resolution(cases):
    for it, c in of_kind(cases, "moved_value"):
        ref, d = it["text_cot"], c.detail
        s, orig, new = d["start"], d["original"], d["moved"]
        assert ref[s:s + len(orig)] == orig and c.reasoning == ref[:s] + new + ref[s + len(orig):]
        assert c.answer == str(it["answer"]) and "contradicted" in c.expect
        assert d["moved_from"] not in d["referent"]
        unit, meta = d["unit"], it["meta"]
        if unit == "note":
            names = [e.get("note") for e in meta["events"]]
            assert orig in names and new in names and new != orig
            continue
        tol = adv.rounding_tol(new)
        assert any(abs(float(v) - float(new)) <= tol for v in meta_values(meta, unit)), (it["id"], new)
        assert any(abs(float(v) - float(orig)) <= adv.rounding_tol(orig) for v in meta_values(meta, unit))
        a, b = float(orig), float(new)
        if unit == "db":
            assert abs(a - b) >= 3
        else:
            assert max(abs(a), abs(b)) / min(abs(a), abs(b)) >= 1.08 and (unit != "s" or abs(a - b) >= 0.03)


def test_flipped_conclusion_names_another_choice(cases):
    for it, c in of_kind(cases, "flipped_conclusion"):
        ref, d, answer = it["text_cot"], c.detail, str(it["answer"])
        last = adv.last_sentence_start(ref)
        assert d["start"] >= last and c.reasoning[:last] == ref[:last]  # only the conclusion changes
        assert c.reasoning != ref and c.answer == answer and c.expect == {"incoherent"}
        if it.get("choices"):
            other = d["new_answer"]
            assert other in it["choices"] and other != answer
            assert d["flipped_to"].lower() in {w.lower() for w in adv.answer_forms(other).values()}
            assert d["flipped_to"].lower() not in {w.lower() for w in adv.answer_forms(answer).values()}
        else:
            assert int(d["flipped_to"]) != int(answer) and int(d["original"]) == int(answer)
    for it, c in of_kind(cases, "flipped_conclusion_and_answer"):
        assert c.answer == c.detail["new_answer"] != str(it["answer"]) and c.expect == {"incorrect", "incoherent"}


def test_surrogate_plus_fact_appends_a_true_sentence(cases):
    for it, c in of_kind(cases, "surrogate_plus_fact"):
        assert c.reasoning.startswith(it["surrogate_cot"]) and c.answer == str(it["surrogate_answer"])
        added = c.reasoning[len(it["surrogate_cot"]):].strip()
        v = float(re.search(r"(\d+\.\d+) s\.$", added).group(1))
        truth = it["meta"]["events"][0]["onset_sec"] if "starts" in added else it["meta"]["clip"]["duration_sec"]
        assert abs(v - truth) <= 0.051 and c.expect == {"surrogate"}


def test_wrong_noun_count_uses_a_kind_the_clip_lacks(cases):
    nouns = {"click": "click", "beep": "tonal", "tone": "tonal", "word": "speech", "note": "note", "digit": "speech"}
    for it, c in of_kind(cases, "wrong_noun_count"):
        d = c.detail
        n_old, noun_old = d["original"].split(" ")[0], d["original"].split(" ")[-1]
        n_new, noun_new = d["replaced_by"].split(" ")[0], d["replaced_by"].split(" ")[-1]
        assert n_old == n_new and adv.singular(noun_old) != adv.singular(noun_new)
        present = {adv.KIND_CLASS[e["kind"]] for e in it["meta"]["events"]}
        assert nouns[adv.singular(noun_new)] not in present, (it["id"], d)
        assert c.reasoning.replace(d["replaced_by"], d["original"], 1) == it["text_cot"]


def test_bare_count_states_the_true_count(cases):
    for it, c in of_kind(cases, "bare_count"):
        n = int(re.search(r"\d+", c.reasoning).group())
        assert n == int(it["answer"]) and c.answer == str(it["answer"]) and c.expect == {"ungrounded"}
        assert n in it["meta"]["counts"].values() and len(c.reasoning.split(".")) == 2


def test_borrowed_chain_comes_from_another_item_with_different_facts(cases, pools):
    for it, c in of_kind(cases, "borrowed"):
        src = next(o for o in pools[it["task"]] if o["id"] == c.detail["source_id"])
        assert src["id"] != it["id"] and c.reasoning == src["text_cot"] and c.answer == str(it["answer"])
        assert adv.states_different_facts(src["text_cot"], it["text_cot"])
        assert src["meta"]["events"] != it["meta"]["events"]


def test_no_corruption_equals_the_reference(cases):
    for it, c in cases:
        if c.kind in ("reference", "surrogate") or not c.expect:
            continue
        assert c.completion != adv.reference_case(it).completion, (it["id"], c.kind)


def test_paraphrases_keep_every_number_and_the_conclusion(cases):
    for kind in ("synonyms", "clause_order", "numbers_as_words"):
        for it, c in of_kind(cases, kind):
            ref, answer = it["text_cot"], str(it["answer"])
            assert c.reasoning != ref and c.answer == answer and c.expect == frozenset()
            assert numbers(c.reasoning) == numbers(ref), (it["id"], kind, c.reasoning)
            assert re.findall(r'"[^"]*"', c.reasoning) == re.findall(r'"[^"]*"', ref)  # quotes untouched
            forms = adv.answer_forms(answer).values()
            assert any(adv.find_wording(c.reasoning, w, 0) for w in forms), (it["id"], kind, c.reasoning)
            if kind == "numbers_as_words":
                assert re.sub(r"\d+\.\d+", "", c.reasoning).count("Hz") == ref.count("Hz")
                assert re.findall(r"\d+\.\d+", c.reasoning) == re.findall(r"\d+\.\d+", ref)  # decimals as they were
                assert re.findall(r"\d+ Hz", c.reasoning) == re.findall(r"\d+ Hz", ref)


def test_rules_on_known_chains():
    item = {"text_cot": "The first tone is about 677 Hz and the second about 1030 Hz. 1030 Hz is above 677 Hz by "
                        "about 7.3 semitones, so the second tone is higher.",
            "answer": "the second tone", "choices": ["the second tone", "the first tone"]}
    assert adv.clause_order(item).startswith("The second tone is about 1030 Hz and the first about 677 Hz.")
    cases = adv.flipped(item, random.Random(0))
    assert cases[0].reasoning.endswith("so the first tone is higher.") and cases[1].answer == "the first tone"
    count = {"text_cot": "Counting the clicks as they come: click 1 at 0.18 s, click 2 at 0.59 s. That makes 2 clicks.",
             "answer": "2", "choices": None}
    assert adv.numbers_as_words(count) == ("Counting the clicks as they come: click one at 0.18 s, click two at "
                                           "0.59 s. That makes two clicks.")
    speaker = {"text_cot": 'A male voice says "six"; its vowels and consonants carry a German accent.',
               "answer": "a German accent", "choices": ["a German accent", "an American English accent"]}
    flipped = adv.flipped(speaker, random.Random(0))[0].reasoning
    assert flipped.endswith("carry an American English accent.")  # the article comes with the choice


def test_same_seed_same_cases_and_the_seed_matters(pools):
    def run(seed):
        return [(c.kind, c.completion, c.expect) for t, items in sorted(pools.items()) for it in items
                for c in adv.all_cases(it, items, random.Random(f"{seed}:{it['id']}"))]
    a, b, other = run(1), run(1), run(2)
    assert a == b
    assert a != other
