"""Refusals and wrong self-cognition in a reasoning chain: "I cannot hear audio", "as a text-based model…",
"no audio was provided", and their paraphrases.

Design choices:
- A refusal is a claim that the *model* cannot perceive or handle audio, is a text-only model, or was not given
  the audio. A statement about the clip — a sound that is absent, faint or masked ("I can't hear any speech in
  this clip, only a tone", "I cannot hear a second voice", "there is no audio dropout") — is not one.
- What separates them is the object. An inability claim is about hearing in general ("I can't hear", "I am not
  able to listen") or about the carrier itself: the audio, clip, recording, sound file, attachment, the spoken
  question ("I cannot hear the audio", "I can't process audio files"). A perceptual statement is about something
  *in* the clip ("any speech", "a second voice", "the high note"), is located in it ("the audio in the last
  second", "after 3 s") or qualified ("clearly", "over the noise"). So a carrier object only counts when its
  clause ends there (punctuation, a conjunction, "you sent", "in this message", "directly"); "any audio" reads
  as absence, not inability; a bare "it" counts only with "actually / really / physically / directly".
- Only the model's own voice counts: the subject is "I", "this model", "the model", "the assistant" (or the
  text talks about what was attached). Reported speech ("she says she cannot hear the music") and quoted text
  (transcripts in "…" or '…') are ignored: quotes are removed before matching.
- Text is normalised first: lower case, curly quotes to straight ones, markdown emphasis removed, whitespace
  collapsed. The patterns are a few families of readable regexes, not one per phrasing; what they miss can go
  to the optional LLM judge (`audior1.eval.judge.refusal_judge`, through any OpenAI-compatible endpoint), which
  only sees the texts the patterns do not flag.

`is_refusal(text)` says whether any family matches; `refusal_reason(text)` names the first family that does
(`text_only_model`, `no_audio_provided`, `cannot_hear`, `cannot_process_audio`) or returns None. The bank of
phrasings both ways is `tests/test_refusal.py`.
"""

from __future__ import annotations

import re

# ------------------------------------------------------------------------------------------ building blocks
# Who speaks: the model itself (not "she", "the speaker", "we", "the listener").
_SUBJ = r"\b(?:i|(?:this|the)\s+(?:model|assistant|ai|system))"
# Between the subject and its verb: a space, or nothing before "'m" ("i'm unable").
_SEP = r"(?:\s+|(?='))"
# Adverbs that may sit between the parts of a claim ("I really can't actually hear").
_ADV = r"(?:\s+(?:actually|really|simply|just|unfortunately|sadly|currently|personally|physically|directly|" \
       r"literally|truly|even|still|therefore|also))*"
# A negated ability, any person or tense: can't, am unable to, do not have the ability to, have no way to...
_NEG = (r"(?:can(?:'?t|not|\s+not)|could(?:n't|\s+not)|wo(?:n't)|will\s+not|do(?:n't|\s+not)|does(?:n't|\s+not)|"
        r"(?:am|'m|is|are|was)(?:n't|\s+not)?\s+(?:unable|incapable)\s+(?:to|of)|"
        r"(?:am|'m|is|are|was)(?:n't|\s+not)\s+(?:able|capable|equipped|designed|built|trained)\s+(?:to|of|for)|"
        r"(?:wo(?:n't)|will\s+not)\s+be\s+able\s+to|"
        r"(?:do(?:n't|\s+not)|does(?:n't|\s+not))\s+(?:have|possess)\s+(?:the\s+|any\s+)?"
        r"(?:ability|capability|capacity|means|way)\s+(?:to|of)|"
        r"(?:have|has)\s+no\s+(?:\w+\s+)?(?:ability|capability|capacity|means|way)\s+(?:to|of)|"
        r"lacks?\s+the\s+(?:ability|capability|capacity|means)\s+(?:to|of))")
# The carrier: the audio itself, never something heard in it ("the question" only when spoken: "I can't
# understand the question" is no refusal). Optional determiner and adjectives first.
_DET = r"(?:(?:the|this|that|your|an?|these|those)\s+)?(?:(?:provided|attached|given|uploaded|shared|" \
       r"accompanying|original|actual|spoken|voice|audio|sound|input)\s+)*"
_CARRIER = r"(?:audio(?:\s+(?:clips?|files?|tracks?|recordings?|inputs?|content|data|attachments?|messages?))?|" \
           r"sound\s+(?:files?|clips?|recordings?)|recordings?|clips?|attachments?|files?|" \
           r"(?:spoken|voice)\s+(?:questions?|messages?|prompts?|query))\b"
# Where a carrier claim may end: punctuation, a conjunction, "you sent", "in this message", "directly"...
# Anything else ("in the last second", "clearly", "over the noise", "'s left channel") makes it perceptual.
_END = (r"(?=\s*(?:$|[.,;:!?)\"(—–]|-\s|"
        r"in\s+(?:this|the|that|your)\s+(?:audio|clip|recording|file|attachment)(?:\s+(?:clip|file))?\s*(?:$|[.,;:!?])|"
        r"(?:so|and|but|or|because|since|as|which|that|therefore|thus|hence|"
        r"here|directly|myself|itself|at\s+all|though|although|however|yet|either|nor|you|the\s+user|"
        r"to\s+me|for\s+me|in\s+(?:this|your|the|our)\s+(?:message|conversation|prompt|request|input|question|"
        r"chat|context|query|turn)|with\s+(?:this|your|the)\s+(?:message|question|prompt|request))\b))")
# With no object at all ("I can't hear, so", "I cannot hear."): only punctuation or a conjunction may follow, never
# "you" ("I can't hear you" is reported speech), "which"/"whether" ("I can't hear which tone is higher") or "that".
_END_BARE = (r"(?=\s*(?:$|[.,;:!?)\"(—–]|-\s|(?:so|and|but|or|because|since|therefore|thus|hence|though|although|"
             r"however|yet|myself|directly|at\s+all)\b))")
_HEAR = r"(?:hear(?:ing)?|listen(?:ing)?|perceiv(?:e|ing))"
_HANDLE = r"(?:process(?:ing)?|analy[sz](?:e|ing)|play(?:ing)?(?:\s+back)?|open(?:ing)?|access(?:ing)?|" \
          r"handl(?:e|ing)|decod(?:e|ing)|load(?:ing)?|receiv(?:e|ing)|review(?:ing)?|" \
          r"examin(?:e|ing)|work(?:ing)?\s+with|deal(?:ing)?\s+with|take\s+in)"   # not "understand", "interpret":
# "I can't understand the recording" is said of muffled speech.
# Verbs may be coordinated: "listen to or play", "hear, process or analyse".
_VERBS = rf"(?:{_HEAR}|{_HANDLE})(?:\s+to)?(?:\s*(?:,|/|\bor\b|\band\b|,\s*or)\s*(?:{_HEAR}|{_HANDLE})(?:\s+to)?)*"
_DEPICT = r"(?:sounds?|audio|music|audio\s+files|recordings|voice\s+messages?)"   # bare, or "the sounds"

FAMILIES: dict[str, list[re.Pattern]] = {
    # "as a text-based model", "I'm just a text AI", "I can only process text", "I am a large language model".
    "text_only_model": [re.compile(p) for p in (
        r"\bas\s+an?\s+(?:(?:large|purely|pure|strictly|mere|ai)\s+)*(?:text(?:[- ]?(?:based|only))?|language)"
        r"(?:\s+(?:ai|language|generation|processing))*\s+(?:model|ai|assistant|system|chatbot|bot|llm)\b",
        r"\bas\s+an?\s+llm\b",
        r"\bi(?:'?m|\s+am)\s+(?:\w+\s+){0,2}an?\s+(?:(?:large|purely|pure|strictly|mere|ai)\s+)*"
        r"(?:text(?:[- ]?(?:based|only))?|language)(?:\s+(?:ai|language|generation))*\s+"
        r"(?:model|ai|assistant|system|chatbot|bot|llm)\b",
        r"\b(?:i(?:'?m|\s+am)|(?:this|the)\s+(?:model|assistant)\s+is)\s+(?:\w+\s+)?text[- ]?(?:only|based)\b",
        # "I can only process text", "an AI that works only with text", "limited to text".
        rf"{_SUBJ}\b[^.;]{{0,30}}?\b(?:only|solely|exclusively)\s+(?:(?:process|handle|read|understand|work|deal|"
        rf"accept|take|respond|see|receive|support|know|communicat)\w*\s+)?(?:with\s+|to\s+|in\s+)?"
        rf"(?:written\s+|plain\s+)?(?:text|words)\b(?!-)",
        r"\b(?:my|its)\s+(?:capabilities|abilities|input)\s+(?:are|is)\s+(?:limited|restricted)\s+to\s+text",
    )],
    # "no audio was provided", "there is no audio attached", "the audio file was not included",
    # "I don't have access to the recording", "you didn't attach the clip", "the recording appears to be missing".
    "no_audio_provided": [re.compile(p) for p in (
        r"\bno\s+(?:audio|sound|recordings?|clips?|attachments?|files?|media)(?:\s+(?:files?|clips?|attachments?))?"
        r"\s+(?:(?:was|is|were|are|has|have)\s+)?(?:(?:been|yet)\s+)?(?:provided|attached|included|uploaded|"
        r"shared|given|supplied|sent|received|embedded|loaded|available|accessible)\b",
        rf"\bthere(?:(?:\s+is|\s+was|'s|\s+seems\s+to\s+be|\s+appears\s+to\s+be)\s+no|\s+(?:is|was|does|did)"
        rf"(?:n't|\s+not)\s+(?:seem\s+to\s+be\s+|appear\s+to\s+be\s+)?(?:an?|any))\s+(?:attached\s+)?{_CARRIER}"
        rf"(?:{_END}|\s+(?:attached|provided|included|uploaded|to\s+(?:analy[sz]e|listen|hear|process)))",
        rf"\b(?:the|this|your)\s+{_CARRIER}\s+(?:(?:was|is|has|had|were|are|seems|appears|did|does)(?:n't|\s+not)|"
        rf"(?:has|have)\s+not)\s+(?:to\s+)?(?:have\s+)?(?:been\s+|be\s+)?(?:provided|attached|included|uploaded|"
        rf"shared|received|sent|come\s+through|load(?:ed)?|accessible|available){_END}",
        rf"\b(?:the|this|your)\s+{_CARRIER}\s+(?:is|was|seems|appears)\s+(?:to\s+(?:be|have\s+been)\s+)?"
        rf"(?:missing|unavailable|inaccessible|not\s+(?:there|present|available|accessible)){_END}",
        rf"\b(?:the|this|your)\s+{_CARRIER}\s+(?:failed\s+to|did(?:n't|\s+not))\s+(?:load|upload|attach|"
        rf"come\s+through|arrive)\b",
        r"\b(?:you|the\s+user)\s+(?:did(?:n't|\s+not)|have(?:n't|\s+not)|forgot\s+to|neglected\s+to)\s+"
        r"(?:yet\s+)?(?:attach|provide|include|upload|share|send)\w*\b",
        rf"\bi\s+(?:do(?:n't|\s+not)|did(?:n't|\s+not)|can(?:'?t|not|\s+not)|have(?:n't|\s+not))\s+"
        rf"(?:see|find|have|receive|get|got|received)\s+(?:any\s+|an?\s+|the\s+|your\s+)?(?:attached\s+)?"
        rf"{_CARRIER}(?:{_END}|\s+(?:attached|provided|included|uploaded))",
        rf"{_SUBJ}\s+(?:do(?:n't|\s+not)|does(?:n't|\s+not)|can(?:'?t|not|\s+not))\s+(?:have|get|gain)\s+"
        rf"(?:any\s+)?access\s+to\s+{_DET}(?:{_CARRIER}|it\b|sound\b)",
        r"\bi\s+(?:did(?:n't|\s+not)|have(?:n't|\s+not))\s+(?:receive|get|got|received)\s+(?:it|them|anything)\b",
        rf"\b(?:please|could\s+you|can\s+you|would\s+you)\s+(?:re-?)?(?:upload|attach|share|send|provide|resend)\s+"
        rf"(?:\w+\s+){{0,2}}?{_CARRIER}",
        rf"{_SUBJ}\s+(?:have|has)\s+no\s+access\s+to\s+{_DET}(?:{_CARRIER}|it\b|sound\b)",
        r"\bi\s+only\s+(?:have|see|received|got|was\s+given)\s+(?:the\s+|your\s+)?(?:question\s+)?"
        r"(?:text|words|transcript|written)\b(?!-)",
        rf"\bwithout\s+(?:(?:having\s+)?access\s+to|having|hearing|listening\s+to|being\s+able\s+to\s+"
        rf"(?:hear|listen\s+to|access|play))\s+{_DET}{_CARRIER}{_END}",
        r"\b(?:this|the|your)\s+(?:conversation|message|prompt|request|question)\s+(?:contains|includes|has)\s+"
        r"no\s+(?:audio|attachments?|recordings?|sound)\b",
    )],
    # "I'm unable to hear", "I can not hear", "I am not able to listen", "I have no way to listen",
    # "without being able to hear the clip", "since I can't actually hear it", "I don't have ears".
    "cannot_hear": [re.compile(p) for p in (
        # Listening, negated, needs no object: nobody reports a sound's absence as "I can't listen".
        rf"{_SUBJ}{_ADV}{_SEP}{_NEG}{_ADV}\s+(?:\w+\s+(?:or|and)\s+)?listen(?:ing)?\b",
        # Hearing with no object at all ("I can't hear, so", "I cannot hear."), with the carrier
        # ("the audio", "the clip you sent"), bare depiction ("audio", "sounds"), or "it" with an
        # insisting adverb ("I can't actually hear it").
        rf"{_SUBJ}{_ADV}{_SEP}{_NEG}{_ADV}\s+(?:hear(?:ing)?|perceiv(?:e|ing))(?:{_END_BARE}|\s+{_DET}{_CARRIER}{_END}|"
        rf"\s+(?:the\s+)?(?:{_DEPICT}|questions?){_END})",
        rf"{_SUBJ}(?:\s+(?:actually|really|physically|literally|directly))?{_SEP}{_NEG}\s+(?:actually|really|"
        rf"physically|literally|directly)\s+(?:hear|perceive)\s+(?:it|them|this|that)\b",
        rf"{_SUBJ}{_ADV}{_SEP}{_NEG}{_ADV}\s+(?:hear|perceive)\s+(?:it|them)\s+(?:myself|directly|at\s+all\s+as)\b",
        rf"\bwithout\s+(?:being\s+able|the\s+(?:ability|means)|a\s+way|any\s+way)\s+to\s+(?:hear|listen)"
        rf"(?:{_END_BARE}|\s+to\b|\s+{_DET}{_CARRIER}{_END}|\s+(?:it|them)\b)",
        # No organ for it: "I don't have ears", "I have no hearing", "the assistant does not have audio capabilities".
        rf"{_SUBJ}\s+(?:do(?:n't|\s+not)|does(?:n't|\s+not))\s+(?:have|possess)\s+(?:any\s+)?(?:ears\b|"
        rf"hearing\b|auditory\s+\w+|audio\s+(?:capabilit|abilit|input|perception|processing|support|access)\w*)",
        rf"{_SUBJ}\s+(?:have|has)\s+no\s+(?:ears\b|hearing\b|auditory\s+\w+|"
        rf"audio\s+(?:capabilit|abilit|input|perception|processing|support)\w*)",
        rf"{_SUBJ}\s+lacks?\s+(?:the\s+)?(?:ears\b|hearing\b|auditory\s+\w+|audio\s+(?:capabilit|abilit|input|"
        rf"perception|processing)\w*)",
        r"\b(?:hearing|listening\s+to)\s+(?:audio|sounds?|the\s+clip|the\s+recording)\s+is\s+(?:not\s+something|"
        r"beyond|outside|not\s+within)\b",
    )],
    # "I cannot play sound files", "I do not have the ability to process audio", "audio input is not supported".
    "cannot_process_audio": [re.compile(p) for p in (
        rf"{_SUBJ}{_ADV}{_SEP}{_NEG}{_ADV}\s+{_VERBS}\s+(?:(?:any|or)\s+)?(?:{_DET}{_CARRIER}|{_DEPICT}|sound\s+"
        rf"or\s+\w+){_END}",
        rf"{_SUBJ}{_ADV}{_SEP}{_NEG}{_ADV}\s+(?:play|open|access|load)\s+(?:it|them)\b",
        rf"{_SUBJ}\s+(?:do(?:n't|\s+not)|does(?:n't|\s+not)|can(?:'?t|not|\s+not))\s+support\s+(?:audio|sound|"
        rf"voice)\b",
        r"\b(?:process|analy[sz]|play|handl|interpret|understand)\w*\s+(?:audio|sounds?|sound\s+files?|"
        r"audio\s+\w+|recordings?)\s+(?:is|are)\s+(?:beyond|outside|not\s+(?:within|among|part\s+of))\s+"
        r"(?:my|its|the\s+model's)\b",
        r"\baudio(?:\s+(?:input|inputs|files?|processing|content|clips?|attachments?|messages?))?\s+(?:is|are)\s+"
        r"not\s+(?:supported|something\s+i\s+can|available\s+to\s+me)\b",
        rf"\b(?:the|this|that|your)\s+{_CARRIER}\s+(?:can(?:'?t|not|\s+not))\s+be\s+(?:heard|played|processed|"
        rf"accessed|opened|analy[sz]ed)(?:\s+by\s+me|\s+here)?{_END}",
    )],
}

_QUOTED = re.compile(r"\"[^\"\n]{0,400}\"|(?<![\w'])'(?:[^'\n]|'(?=\w)){0,400}'(?!\w)")


def normalise(text: str) -> str:
    """Lower case, straight quotes, no markdown emphasis, single spaces; quoted spans (transcripts) removed."""
    t = text.lower()
    t = re.sub(r"[\u2018\u2019\u02bc\u2032`]", "'", t)
    t = re.sub(r"[\u201c\u201d\u201e\u00ab\u00bb]", '"', t)
    t = re.sub(r"[*_]+", "", t)
    t = re.sub(r"\s+", " ", t).strip()
    return _QUOTED.sub(" ", t)


def refusal_reason(text: str) -> str | None:
    """The first pattern family that flags `text` as a refusal or wrong self-cognition, or None."""
    t = normalise(text)
    for family, patterns in FAMILIES.items():
        if any(p.search(t) for p in patterns):
            return family
    return None


def is_refusal(text: str) -> bool:
    """Does `text` claim the model cannot hear or handle audio, is text-only, or was given no audio?"""
    return refusal_reason(text) is not None
