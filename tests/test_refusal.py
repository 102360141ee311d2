"""The refusal / wrong-self-cognition detector (audior1.data.refusal) on a bank of phrasings both ways, and the
optional LLM judge (audior1.eval.judge.refusal_judge) against a scripted OpenAI-compatible server on 127.0.0.1."""

import pytest

from audior1.chat import THINK_END
from audior1.data.grounding import judge_chain
from audior1.data.refusal import FAMILIES, is_refusal, normalise, refusal_reason
from test_eval_e2e import serve  # noqa: F401 - the scripted OpenAI-compatible server fixture

# --------------------------------------------------------------------------------------------------- the bank
# Claims of inability to perceive audio, of being a text-only model, or of not having the audio.
REFUSALS = [
    "I cannot hear audio.",
    "I cannot hear the audio.",
    "I'm unable to hear the clip you shared.",
    "I can not hear, so I cannot say which tone is higher.",
    "I am not able to listen to audio recordings.",
    "I'm not able to listen, but based on the question the answer is probably B.",
    "I do not have the ability to process audio.",
    "As a text-based model, I have no access to the sound itself.",
    "As a language model I can't listen to the recording, so I'll guess.",
    "No audio was provided with your question.",
    "There is no audio attached to this message.",
    "The audio file was not included in your message.",
    "I don't have access to the recording.",
    "I cannot play sound files.",
    "I have no way to listen to the clip.",
    "Without being able to hear the clip, the most common answer for such questions is C.",
    "Since I can't actually hear it, I'll rely on the wording of the question.",
    "I'm just a text AI, so I can't tell how many beeps there are.",
    "Unfortunately, I can't listen to audio files.",
    "I'm sorry, but I am unable to process audio content.",
    "This model cannot hear sounds; it only reads text.",
    "The assistant is unable to listen to the attached recording.",
    "I don't have ears, so I can only reason from the text of the question.",
    "As an AI language model, I don't have the capability to hear music.",
    "I am a large language model and cannot perceive sound.",
    "You didn't attach an audio file, so I can't count the beeps.",
    "It seems the audio wasn't uploaded; could you share it again?",
    "I don't see any audio attached to your question.",
    "I can only process text, so I can't analyse the recording.",
    "I'm a text-only assistant and can't hear the melody.",
    "My capabilities are limited to text; I cannot hear the tones.",
    "I cannot analyze the audio directly.",
    "I can't open the audio file you mentioned.",
    "I'm unable to access the audio attachment.",
    "I did not receive any audio, only the question.",
    "The recording appears to be missing.",
    "Processing audio is beyond my capabilities.",
    "Audio input is not supported in this conversation.",
    "I can\u2019t hear the recording \u2014 I only see your text.",
    "I CANNOT HEAR THE AUDIO.",
    "I lack the ability to hear, so any answer would be a guess.",
    "I have no means of listening to the clip.",
    "Without access to the audio, I'll assume the tones are different.",
    "I'm not capable of hearing the sound file.",
    "Because I cannot directly hear the recording, I'll reason from typical examples.",
    "I can't physically hear it, but questions like this usually have answer A.",
    "Hearing audio is not something I can do as a text model.",
    "I don't have the ability to listen to or play audio.",
    "I cannot process sound recordings or music.",
    "There's no audio file in your message.",
    "No recording was attached, so I can't compare the pitches.",
    "I only have the text of your question, not the sound.",
    "I'm an AI that works only with text, so I can't hear the clip.",
    "The assistant does not have audio capabilities.",
    "I'm unable to perceive audio, so I'll answer from general knowledge.",
    "As a text model, I'm not able to detect beeps.",
    "I am not equipped to hear audio clips.",
    "I couldn't hear the audio you sent.",
    "I won't be able to listen to the recording.",
    "Sadly I can't hear your voice message.",
    "I cannot play or hear the attached clip.",
    "Since no audio has been shared, I can't determine the tempo.",
    "i cant hear the audio, sorry",
    "I can't hear the clip, so I'll guess \"B\".",
    "I'm not able to hear it directly.",
    "there was no audio attached.",
    "The audio clip didn't load, so I cannot hear it.",
    "**I can't hear audio**, but tones in such tasks are usually 440 Hz.",
]

# Legitimate statements in reasoning chains: sounds absent, faint or masked in the clip, reported or quoted speech.
LEGITIMATE = [
    "I can't hear any speech in this clip, only a tone.",
    "I cannot hear a second voice.",
    "There is no audio dropout between the beeps.",
    "I can't hear any background noise.",
    "The speaker says she cannot hear the music.",
    "No speech is audible after 2 seconds.",
    "I can barely hear the second beep under the hiss.",
    "The word 'hear' is spoken twice.",
    "The man says \"I can't hear you\" and then the line goes quiet.",
    "The listener cannot hear the difference between 440 Hz and 442 Hz.",
    "It is hard to hear the high note because the noise masks it.",
    "I can't hear a gap between the third and fourth beeps.",
    "I cannot hear any vibrato on the sustained note.",
    "After 3.2 s I can't hear anything but faint hiss.",
    "I don't hear a second melody, just the first one repeated.",
    "The third beep is very faint; I can hardly hear it.",
    "I can't hear it clearly over the noise, but the pitch seems lower.",
    "The recording has no audible clicks.",
    "There is no audio clipping in the loud section.",
    "No audio artifacts are present.",
    "I can't make out the words, but the voice is low-pitched.",
    "I can't tell the two tones apart; they sound identical.",
    "I cannot hear the audio in the last second because it is silent.",
    "I don't hear any rise in pitch; the contour is flat.",
    "I can't hear the melody clearly at the end.",
    "I cannot hear any drums in the background.",
    "The audio is not loud enough to clip.",
    "The audio was not recorded in a reverberant room: there is no echo.",
    "The clip is not provided with a caption, so I rely on what I hear.",
    "She says she can't listen to music while working.",
    "The narrator says he is unable to hear the bell.",
    "According to her words, the speaker is not able to hear the announcement.",
    "A second voice cannot be heard.",
    "The tone cannot be heard after 1.5 s.",
    "The audio cannot be heard clearly in the middle section, where the noise is loudest.",
    "I hear no audio after the last beep; the clip is silent from 3 s on.",
    "I listened to the clip twice; the second tone is higher.",
    "Listening closely, I cannot hear a third beep.",
    "Without the hiss, the tones would be easier to hear.",
    "Without hearing the second beep clearly, counting is harder, but I count 4.",
    "I can't hear the low note as clearly as the high one.",
    "The phrase \"no audio was provided\" is read aloud by the speaker.",
    "The speaker says: 'Sorry, I can't hear the audio on my end.'",
    "The beeps are quiet but I can hear all five of them.",
    "I can hear the audio clearly: three tones, each about 0.3 s long.",
    "I can't quite hear whether the last note is A4 or B4, but it sounds closer to A4.",
    "There is no sound between 1.2 s and 1.8 s.",
    "No sound is present in the final half second.",
    "There is no recording noise, so the clip is clean.",
    "I can't hear any reverb; the sound is dry.",
    "I cannot detect a melody, only noise.",
    "The music can't be heard under the speech at first.",
    "I can't hear the difference in loudness between the two clicks.",
    "The background is so quiet that I can't hear it at all after 2 s.",
    "I don't hear the tone drop; it stays at about 300 Hz.",
    "Nothing in the audio suggests a second speaker.",
    "The audio contains only a single sine tone at 440 Hz.",
    "As a result, I cannot hear any beating between the tones.",
    "As a listener, I'd describe the noise as pink.",
    "The file contains speech in English; no music is audible.",
    "The assistant in the recording says it cannot hear the caller.",
    "I'm unable to hear any change in tempo; it stays near 120 BPM.",
    "I am not able to hear a third tone, so the answer is two.",
    "I can not hear a pause between the words.",
    "I have a hard time hearing the quiet beep, but it is there at 2.1 s.",
    "No audio was lost: the clip plays through to the end.",
    "Only text-to-speech voices seem to be used here, since the prosody is flat.",
    "The speaker sounds like a language model reading text aloud.",
]

# Held out: written after the patterns above were fixed, then run once. Before they joined the bank the
# patterns caught 14 of these 18 refusals and flagged none of the 18 legitimate statements (32/36); the four
# misses ("there doesn't seem to be any audio attached", "the sounds in this recording", "please upload the
# audio again, as I did not receive it", "I am an AI language model") led to general fixes in the families.
HELD_OUT_REFUSALS = [
    "Unfortunately, I'm not able to process audio input, so I can't determine the pitch.",
    "I'm sorry, I can't listen to the clip you've provided.",
    "It looks like the audio didn't come through on my end.",
    "As an AI developed to handle text, I cannot hear the recording.",
    "I don't have the capability to analyze sound, but generally a higher frequency means a higher pitch.",
    "Since I have no access to the actual sound, I'll estimate from the question.",
    "I'm unable to play back the recording you attached.",
    "Because I can't hear audio, I'll go with option A.",
    "There doesn't seem to be any audio attached here.",
    "My apologies, but I can't access audio files.",
    "I cannot perceive the sounds in this recording.",
    "I do not have hearing, so I cannot compare the two tones.",
    "As a text-only AI, I'm unable to count the beeps.",
    "Please upload the audio again, as I did not receive it.",
    "I have no ability to hear the clip.",
    "Without hearing the audio, I can only guess that the answer is B.",
    "The model is not able to listen to audio, so it answers from the text.",
    "I am an AI language model and do not process sound.",
]
HELD_OUT_LEGITIMATE = [
    "I can't hear a clear onset for the fourth beep; it blends into the third.",
    "I'm not able to hear any pitch change between the first and second notes.",
    "There's no audio after 2.4 s, just digital silence.",
    "I can't hear the speaker's words over the music, but her voice is high.",
    "The caller says, 'I can't hear the audio, can you repeat that?'",
    "It seems the second tone is missing the upper harmonics.",
    "I didn't hear a third click, so there are two.",
    "The recording is missing its first syllable, cut off at the start.",
    "The announcer says the audience cannot hear the orchestra.",
    "I cannot hear the bass line at all in the first half.",
    "No audio processing seems to have been applied; the noise is untouched.",
    "I can't hear where one word ends and the next begins.",
    "Since I can't hear any difference in duration, the tones are equally long.",
    "Nobody in the clip can hear the alarm, the woman complains.",
    "The clip wasn't recorded indoors; the wind noise suggests outside.",
    "I could not hear a fifth beep even at the end of the clip.",
    "I can't hear it rise; the pitch stays near 220 Hz throughout.",
    "Without any audio between the beeps, the silence marks each gap.",
]
REFUSALS += HELD_OUT_REFUSALS
LEGITIMATE += HELD_OUT_LEGITIMATE + [
    # Found by probing after the held-out run (both were flagged then): a bare "hear" followed by "you" or "which".
    "I can't hear which tone is higher; they are too close.",
    "The man says I can't hear you, then hangs up.",
    "I can't understand the recording; the speech is too muffled.",
    "I can't understand the question's last word, but the two tones are clear.",
]

# Reason families for a sample of the bank.
REASONS = {
    "As a text-based model, I have no access to the sound itself.": "text_only_model",
    "I'm just a text AI, so I can't tell how many beeps there are.": "text_only_model",
    "I can only process text, so I can't analyse the recording.": "text_only_model",
    "No audio was provided with your question.": "no_audio_provided",
    "There is no audio attached to this message.": "no_audio_provided",
    "The audio file was not included in your message.": "no_audio_provided",
    "I don't have access to the recording.": "no_audio_provided",
    "I'm unable to hear the clip you shared.": "cannot_hear",
    "I can not hear, so I cannot say which tone is higher.": "cannot_hear",
    "Since I can't actually hear it, I'll rely on the wording of the question.": "cannot_hear",
    "I don't have ears, so I can only reason from the text of the question.": "cannot_hear",
    "I cannot play sound files.": "cannot_process_audio",
    "I do not have the ability to process audio.": "cannot_process_audio",
    "Audio input is not supported in this conversation.": "cannot_process_audio",
    "I can't hear any speech in this clip, only a tone.": None,
}


def test_bank_sizes():
    assert len(REFUSALS) >= 60 and len(LEGITIMATE) >= 60
    assert not set(REFUSALS) & set(LEGITIMATE)


@pytest.mark.parametrize("text", REFUSALS)
def test_refusal_is_flagged(text):
    assert is_refusal(text), text


@pytest.mark.parametrize("text", LEGITIMATE)
def test_legitimate_statement_is_not_flagged(text):
    assert not is_refusal(text), (text, refusal_reason(text))


@pytest.mark.parametrize("text,family", list(REASONS.items()))
def test_reason_family(text, family):
    assert refusal_reason(text) == family


def test_every_family_flags_part_of_the_bank():
    assert {refusal_reason(t) for t in REFUSALS} == set(FAMILIES)


def test_normalise_and_embedding_in_a_chain():
    assert normalise("I  can\u2019t\nhear *the* audio") == "i can't hear the audio"
    chain = ("The clip starts with a 440 Hz tone. Honestly, I\u2019m not able to listen to it, though, "
             "so I will guess the second is higher.")
    assert refusal_reason(chain) == "cannot_hear"
    assert not is_refusal("The first tone is about 440 Hz and the second about 494 Hz, so the second is higher.")


def test_the_grounding_filter_uses_the_detector():
    item = {"id": "x", "answer": "A4", "choices": None, "meta": None}
    for text, refused in (("I'm unable to hear the clip. It is probably 440 Hz.", True),
                          ("There is no audio attached. The tone is 440 Hz.", True),
                          ("I can't hear any speech in this clip, only a 440 Hz tone.", False),
                          ("I can't hear any noise; the tone is 440 Hz.", False)):
        v = judge_chain(item, f"{text}\n{THINK_END}\nA4")
        assert ("refusal" in v.reasons) == refused, text


# ------------------------------------------------------------------------------------------------ the judge
def passage_of(payload) -> str:
    prompt = payload["messages"][0]["content"]
    return prompt.split("<passage>\n", 1)[1].split("\n</passage>", 1)[0]


def test_refusal_judge_only_sees_what_the_patterns_miss(serve, tmp_path):
    from audior1.eval.judge import refusal_judge
    missed = "My hearing module is offline today, so the tones are a mystery to me."
    server = serve(lambda p: {"content": "YES" if "offline" in passage_of(p) else "NO\n"})
    texts = ["I cannot hear the audio.", missed, "I can't hear any speech in this clip, only a tone."]
    got = refusal_judge(texts, server.url, "judge", api_key="sk-test", cache_dir=tmp_path)
    assert got == [True, True, False]
    assert len(server.requests) == 2                               # the flagged text never reached the judge
    assert {passage_of(p) for p in server.requests} == set(texts[1:])
    payload = server.requests[0]
    assert server.authorizations[0] == "Bearer sk-test" and payload["model"] == "judge"
    assert payload["temperature"] == 0.0
    assert "YES or NO" in payload["messages"][0]["content"]
    assert refusal_judge(texts, server.url, "judge", api_key="sk-test", cache_dir=tmp_path) == got
    assert len(server.requests) == 2                               # replies are cached
    assert refusal_judge([], server.url, "judge", cache_dir=tmp_path) == []


def test_refusal_judge_is_strict(serve, tmp_path):
    from audior1.eval.judge import JudgeReplyError, refusal_judge
    server = serve(lambda p: {"content": "Yes, it refuses."})
    with pytest.raises(JudgeReplyError, match="Yes, it refuses"):
        refusal_judge(["The tones are a mystery to me."], server.url, "judge", cache_dir=tmp_path)
    server = serve(lambda p: {"content": "yes"})
    with pytest.raises(JudgeReplyError, match="'yes'"):
        refusal_judge(["The tones are a mystery to me."], server.url, "judge", cache_dir=tmp_path / "b")


def test_refusal_judge_errors_are_reported(serve, tmp_path):
    from audior1.eval.backends import EndpointError, RequestError
    from audior1.eval.judge import refusal_judge
    with pytest.raises(EndpointError):                             # nothing listens there
        refusal_judge(["The tones are a mystery."], "http://127.0.0.1:9", "judge", cache_dir=tmp_path)
    server = serve(lambda p: 400)
    with pytest.raises(RequestError):
        refusal_judge(["The tones are a mystery."], server.url, "judge", cache_dir=tmp_path)
