"""One small strategy per kind of answer: what to ask the LLM (or what to make instead), and what
to do when the answer is written or fails. The job (generation.py) streams and pages any kind the
same way and never asks which kind it is running."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Protocol

from bot import texts
from bot.experts import Route
from bot.llm import ChatBackend, ChatMessage, calls_tools
from bot.media.images import Refusal
from bot.media.vision import PhotoError, with_image
from bot.media.voice import TranscriptionError
from bot.runtime import Runtime
from bot.store.answers import Answer
from bot.store.pages import Source
from bot.tools import ToolBox

log = logging.getLogger(__name__)

#: /minutes end waits this long for voice pieces still being transcribed (seconds)
MINUTES_WAIT_SECONDS = 60
#: a question sent in a burst reads at most this many of the questions just before it, each cut to this long
EARLIER_QUESTIONS = 3
EARLIER_QUESTION_CHARS = 300
#: the kinds of answer whose question goes into the history (and so is context for the next question)
REMEMBERED_KINDS = ("text", "voice")


@dataclass(frozen=True)
class Prompt:
    """A conversation for the LLM; `remember`: the question to add to the user's history with the answer;
    `llm` and `model`: another backend and model than the user's (a photo goes to VISION_MODEL);
    `sources`: where the answer's knowledge came from, listed on its page; `tools`: the tools the model
    may call (None: none)."""

    messages: list[ChatMessage]
    remember: str | None
    llm: ChatBackend | None = None
    model: str | None = None
    sources: tuple[Source, ...] = ()
    tools: ToolBox | None = None


@dataclass(frozen=True)
class Made:
    """An answer that needs no LLM: its finished pages (e.g. an image)."""

    pages: list[str]


class Kind(Protocol):
    def prepare(self, answer: Answer) -> Prompt | Made:
        """What to generate; raise Refusal, TranscriptionError or LLMError to fail with plain words."""
        ...

    def written(self, answer: Answer) -> None:
        """The answer is complete."""
        ...

    def failure_note(self, answer: Answer) -> str:
        """Added to the failure text the user reads."""
        ...


class TextKind:
    """A question: the conversation so far, the system prompt, moderation, and the passages of the
    knowledge base relevant to it (the answer then ends with their sources), if any."""

    def __init__(self, runtime: Runtime, tools: ToolBox | None = None) -> None:
        self.runtime = runtime
        self.tools = tools

    def prepare(self, answer: Answer) -> Prompt | Made:
        question = self.question(answer)
        earlier = self._earlier(answer)
        refused = self.runtime.moderator.refused([question, *earlier])  # one call to the endpoint for all
        if refused[0]:
            raise Refusal(texts.REFUSED_SENSITIVE, "question refused by moderation")
        shown = _let_through(earlier, refused[1:])
        system = self.runtime.overrides.system_prompt()
        # the passages are found for the question alone; the earlier questions stay next to it, after them
        grounded = self.runtime.knowledge.ground(system, question, _after_earlier(shown, question))
        messages = self.runtime.history.prompt(answer.openid, grounded.system, grounded.question)
        tools = self.tools.offered() if self.tools else None  # e.g. no search of an empty knowledge base
        prompt = Prompt(messages, remember=question, sources=grounded.sources, tools=tools)
        return self._routed(answer, question, self._about_photo(answer, prompt), kb_hit=bool(grounded.hits))

    def _earlier(self, answer: Answer) -> list[str]:
        """The questions its user sent just before this one that are still being answered: in a burst
        (「帮我翻译这句话」 then 「I love you」) the second one is answered at the same time as the first,
        before the history has it. With the history off (HISTORY_MAX_TURNS=0) there is no context to give."""
        if not self.runtime.history.max_turns:
            return []
        return self.runtime.answers.asked_before(answer, REMEMBERED_KINDS, EARLIER_QUESTIONS)

    def _routed(self, answer: Answer, question: str, prompt: Prompt, *, kb_hit: bool) -> Prompt:
        """The model for the question (EXPERTS, bot/experts/): the follower's /model choice, else the
        expert for its task; a question about a photo keeps VISION_MODEL."""
        router = self.runtime.experts
        if not router.enabled:
            return prompt
        if prompt.model is not None:
            route = Route("", prompt.model, "vision")
        else:
            chosen = self.runtime.models.of_question(answer.openid, answer.model)
            route = router.route(question, chosen=chosen, kb_hit=kb_hit)
        router.record(answer.id, route)
        return replace(prompt, model=route.model)

    def _about_photo(self, answer: Answer, prompt: Prompt) -> Prompt:
        """A question sent within minutes of a photo (VISION_MODEL) is asked with the photo; if the
        photo cannot be had any more, the question is answered without it."""
        runtime = self.runtime
        photo = runtime.photos.recent(answer.openid) if runtime.settings.vision_model else None
        if photo is None:
            return prompt
        try:
            image = runtime.vision.fetch(photo.media_id, photo.pic_url)
        except PhotoError as exc:
            log.warning("answer %s: the photo it may be about is gone (%s)", answer.id, exc)
            return prompt
        messages = [*prompt.messages[:-1], with_image(prompt.messages[-1], image)]
        vision = runtime.vision
        return Prompt(
            messages, prompt.remember, llm=vision.backend, model=vision.model, sources=prompt.sources
        )

    def question(self, answer: Answer) -> str:
        return answer.question

    def written(self, answer: Answer) -> None:
        pass

    def failure_note(self, answer: Answer) -> str:
        return ""


class VoiceKind(TextKind):
    """A voice message WeChat did not recognise: transcribed first, then answered like text."""

    def question(self, answer: Answer) -> str:
        if answer.question:  # transcribed by an earlier run
            return answer.question
        text = self.runtime.transcriber.transcribe_media(answer.media_id)
        if not text:
            raise TranscriptionError("empty transcript", empty=True)
        self.runtime.answers.set_question(answer.id, text)
        return text


class PhotoKind(TextKind):
    """A photo (VISION_MODEL): fetched from WeChat and described by the vision model. The history keeps
    a short note of it (PHOTO_NOTE), never the image; the questions that follow ask about it."""

    def prepare(self, answer: Answer) -> Prompt | Made:
        runtime = self.runtime
        try:
            image = runtime.vision.fetch(answer.media_id, runtime.photos.pic_url(answer.media_id))
        except PhotoError as exc:
            raise Refusal(texts.PHOTO_FAILED, f"photo unavailable: {exc}") from exc
        system = runtime.overrides.system_prompt()
        # 「这是什么花？」 sent just before the photo: the description answers it
        earlier = self._earlier(answer)
        shown = _let_through(earlier, runtime.moderator.refused(earlier))
        messages = runtime.history.prompt(answer.openid, system, _after_earlier(shown, texts.PHOTO_DESCRIBE))
        messages[-1] = with_image(messages[-1], image)
        vision = runtime.vision
        return Prompt(messages, remember=texts.PHOTO_NOTE, llm=vision.backend, model=vision.model)


class ImageKind:
    """/image: generated, uploaded to WeChat, one image page."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def prepare(self, answer: Answer) -> Prompt | Made:
        return Made([self.runtime.images.make(answer.question)])

    def written(self, answer: Answer) -> None:
        pass

    def failure_note(self, answer: Answer) -> str:
        return ""


class MinutesKind:
    """/minutes end: the meeting's pieces, once every voice piece is transcribed, written up.

    The answer's `media_id` carries the id of its meeting (what the answer is about, as a voice answer's
    carries its audio): the minutes read, clear and resume that meeting only, never a newer one the user
    started meanwhile."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def prepare(self, answer: Answer) -> Prompt | Made:
        transcript = answer.question or self._transcript(answer)
        question = texts.MINUTES_PROMPT.format(transcript=transcript)
        system = {"role": "system", "content": texts.MINUTES_SYSTEM}
        return Prompt([system, {"role": "user", "content": question}], remember=None)

    def _transcript(self, answer: Answer) -> str:
        minutes, meeting = self.runtime.minutes, answer.media_id
        deadline = time.monotonic() + MINUTES_WAIT_SECONDS
        while minutes.pending(answer.openid, meeting) > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        pieces = minutes.pieces(answer.openid, meeting)
        if not pieces:
            raise Refusal(texts.MINUTES_EMPTY, "no minutes recorded")
        transcript = "\n".join(f"{index}. {piece}" for index, piece in enumerate(pieces, 1))
        # kept on the answer too, so that a restarted run writes the same minutes
        self.runtime.answers.set_question(answer.id, transcript)
        return transcript

    def written(self, answer: Answer) -> None:
        self.runtime.minutes.clear(answer.openid, answer.media_id)  # only now is it no longer needed

    def failure_note(self, answer: Answer) -> str:
        """The recording is kept (and on again) so that /minutes end can be sent again."""
        return texts.MINUTES_KEPT if self.runtime.minutes.resume(answer.openid, answer.media_id) else ""


def _after_earlier(earlier: list[str], question: str) -> str:
    """The question, after the earlier questions its user sent (those moderation lets through), if any."""
    if not earlier:
        return question
    listed = "\n".join(texts.EARLIER_QUESTION.format(text=text) for text in earlier)
    return texts.EARLIER_QUESTIONS.format(questions=listed, question=question)


def _let_through(earlier: list[str], refused: list[bool]) -> list[str]:
    """The earlier questions moderation lets through, each cut to EARLIER_QUESTION_CHARS."""
    return [_cut(text) for text, no in zip(earlier, refused, strict=True) if not no]


def _cut(text: str) -> str:
    return text if len(text) <= EARLIER_QUESTION_CHARS else text[: EARLIER_QUESTION_CHARS - 1] + "…"


def offered_tools(runtime: Runtime) -> ToolBox | None:
    """The tools TOOLS enables, when the backend's models can call them (FastChat's cannot: its worker
    API has no tool protocol, so its answers are written without tools)."""
    toolbox = ToolBox.enabled(runtime.settings.tools, runtime.settings.zone, runtime.knowledge)
    if not toolbox:
        return None
    if not calls_tools(runtime.settings):
        backend = runtime.settings.llm_backend
        log.info("tools off: the %s backend has no function calling (TOOLS ignored)", backend)
        return None
    return toolbox


def kinds(runtime: Runtime) -> dict[str, Kind]:
    tools = offered_tools(runtime)
    return {
        "text": TextKind(runtime, tools),
        "voice": VoiceKind(runtime, tools),
        "image": ImageKind(runtime),
        "photo": PhotoKind(runtime),
        "minutes": MinutesKind(runtime),
    }
