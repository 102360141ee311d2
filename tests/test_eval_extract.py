"""Answer extraction rules (audior1.eval.extract): post-</think> answers, letters ↔ options, numbers."""

import pytest

from audior1.eval import extract
from audior1.eval.extract import bare_letter, number, number_spelled, option_index, option_text, post_think

CHOICES = ["Soft and melodic", "Aggressive and talking", "High-pitched and singing", "Whispering"]


def test_rules_are_named_and_versioned():
    for fn in (post_think, option_text, bare_letter, number, number_spelled, extract.reference_number):
        assert isinstance(fn.NAME, str) and isinstance(fn.VERSION, str)
    assert extract.versions(post_think, option_text) == {"post_think": "2", "option_text": "2"}


@pytest.mark.parametrize("text, answer, reasoning", [
    ("reasoning\n</think>\nB", "B", "reasoning"),
    ("<think>\nreasoning\n</think>\nB<|EOT|>", "B", "reasoning"),                # stray leading <think>, EOT
    ("r</think>\n<RESPONSE>Man</RESPONSE>", "Man", "r"),
    ("r</think>\nSo: <answer>Woman</answer>", "Woman", "r"),
    ("r</think>\n<answer>Woman", "Woman", "r"),                                  # unclosed wrapper
    ("r</think>\n  \n", "", "r"),                                                # closed, empty answer
])
def test_post_think_takes_text_after_the_close(text, answer, reasoning):
    ex = post_think(text)
    assert (ex.answer, ex.reasoning, ex.parseable, ex.flags) == (answer, reasoning, True, [])


def test_post_think_without_close_is_unparseable():
    ex = post_think("<think>\nit could be B but the", think=True)
    assert ex.answer is None and not ex.parseable and ex.reasoning == "it could be B but the"
    assert "no_think_close" in ex.flags
    assert not post_think("", think=True).parseable
    assert not post_think(None, think=True).parseable


def test_multiple_think_close_is_flagged_and_the_first_wins():
    """The one rule (chat.split_reasoning): the answer starts after the FIRST </think>, as the engine and the
    server split it, so the scorer reads what a client was served; the second close is answer text."""
    ex = post_think("a</think>b</think>\nC")
    assert ex.answer == "b</think>\nC" and ex.reasoning == "a"
    assert ex.n_think_close == 2 and "multiple_think_close" in ex.flags


def test_no_think_mode_whole_output_is_answer():
    assert post_think("B. Aggressive and talking<|EOT|>", think=False).answer == "B. Aggressive and talking"
    assert post_think("", think=False).answer == "" and post_think("", think=False).parseable
    ex = post_think("oops</think>\nB", think=False)  # the prompt closed the block: a </think> here is text
    assert ex.answer == "oops</think>\nB" and ex.reasoning == "" and "think_in_no_think_mode" in ex.flags


@pytest.mark.parametrize("answer, index, how", [
    ("B", 1, "bare_letter"), ("B.", 1, "bare_letter"), ("(B)", 1, "bare_letter"), ("**B**", 1, "bare_letter"),
    ("B. Aggressive and talking", 1, "letter_prefixed"), ("(B) whatever", 1, "letter_prefixed"),
    ("B) text", 1, "letter_prefixed"), ("The answer is B", 1, "answer_phrase"),
    ("The correct answer is (C).", 2, "answer_phrase"), ("Answer: D", 3, "answer_phrase"),
    ("aggressive and talking.", 1, "option_text"),
    ("a", None, "text"), ("The answer is a whisper", None, "text"),            # the article "a" is not A
    ("E", None, "text"), ("", None, "empty"), (None, None, "empty"),
    ("I think it is aggressive", None, "text"),
])
def test_option_index(answer, index, how):
    assert option_index(answer, CHOICES) == (index, how)


def test_answer_phrase_followed_by_option_text_starting_with_a():
    choices = ["Cat meowing", "A dog barking"]
    assert option_index("The answer is A dog barking", choices) == (1, "answer_phrase_text")
    assert option_index("The answer is B because it barks", choices) == (1, "answer_phrase")
    assert option_index("A dog barking", choices) == (1, "option_text")


def test_option_text_and_bare_letter():
    assert option_text("B.", CHOICES) == "Aggressive and talking"
    assert option_text("something else", CHOICES) == "something else"
    assert option_text(None, CHOICES) is None
    assert bare_letter("Whispering", CHOICES) == "D"
    assert bare_letter("(A) Soft and melodic", CHOICES) == "A"
    assert bare_letter("not sure", CHOICES) == "not sure"


@pytest.mark.parametrize("text, plain, spelled", [
    ("The answer is 1,234.", "1234", "1234"),
    ("#### 5.0", "5", "5"),
    ("3/4", "0.75", "0.75"),
    ("so 12 apples, then 15", "15", "15"),                    # no trigger: the last number
    ("The answer is 3. Recheck... The answer is 7 apples, not 8", "7", "7"),   # last trigger, first number after
    ("The answer is: $18.", "18", "18"),
    ("-0.50", "-0.5", "-0.5"),
    ("The answer is forty-two", None, "42"),
    ("It came to three hundred and five in total", None, "305"),
    ("twelve plus 3 is fifteen", "3", "15"),
    ("no digits here", None, None),
    ("", None, None),
])
def test_numbers(text, plain, spelled):
    assert number(text) == plain
    assert number_spelled(text) == spelled


def test_reference_number():
    assert extract.reference_number("9 * 2 = 18\n#### 1,800") == "1800"
    assert extract.reference_number("0.750") == "0.75"
    assert extract.reference_number("72 dollars") == "72"
