"""The `fastchat` backend against loopback fakes of FastChat's controller and model workers."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot import texts
from bot.answering.errors import describe
from bot.config import ConfigError, Settings, load_settings
from bot.llm import LLMError, make_backend
from bot.llm.base import ChatMessage, text_only
from bot.llm.fastchat_backend import FastChatBackend, WorkerGone, estimate_tokens, split_stream
from testing.fakes.fastchat import DEFAULT_MODEL, FakeController, FakeWorker

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
CONVERSATION: list[ChatMessage] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "What is 2+2?"},
]

StartWorker = Callable[..., FakeWorker]


def settings_for(controller_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "wechat_token": "token",
        "redis_url": "redis://127.0.0.1:6379/0",
        "llm_backend": "fastchat",
        "fastchat_controller_url": controller_url,
        "fastchat_timeout": 5.0,
    }
    return load_settings(**(values | overrides))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def ask(backend: FastChatBackend, messages: list[ChatMessage] | None = None, **kwargs: Any) -> list[str]:
    return list(text_only(backend.stream(messages or [{"role": "user", "content": "hi"}], **kwargs)))


@pytest.fixture
def controller() -> Iterator[FakeController]:
    with FakeController() as fake:
        yield fake


@pytest.fixture
def start_worker(controller: FakeController) -> Iterator[StartWorker]:
    workers: list[FakeWorker] = []

    def start(
        models: tuple[str, ...] = (DEFAULT_MODEL,), register: bool = True, **behavior: Any
    ) -> FakeWorker:
        worker = FakeWorker(models, **behavior).start()
        workers.append(worker)
        if register:
            controller.register(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def make(controller: FakeController) -> Iterator[Callable[..., FastChatBackend]]:
    backends: list[FastChatBackend] = []

    def build(controller_url: str | None = None, **overrides: Any) -> FastChatBackend:
        backend = FastChatBackend(settings_for(controller_url or controller.url, **overrides))
        backends.append(backend)
        return backend

    yield build
    for backend in backends:
        backend.close()


def test_make_backend_chooses_fastchat(controller: FakeController) -> None:
    backend = make_backend(settings_for(controller.url))
    assert isinstance(backend, FastChatBackend)
    assert backend.name == "fastchat"
    backend.close()


def test_models_lists_the_controllers_models_and_caches_them(
    controller: FakeController, start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    start_worker(("vicuna-7b-v1.5", "vicuna-13b"))
    start_worker(("qwen-7b-chat",))
    backend = make()
    assert backend.models() == ["qwen-7b-chat", "vicuna-13b", "vicuna-7b-v1.5"]
    assert backend.models() == ["qwen-7b-chat", "vicuna-13b", "vicuna-7b-v1.5"]
    assert len(controller.requests_to("/list_models")) == 1


def test_each_model_goes_to_the_worker_that_serves_it(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    vicuna = start_worker(("vicuna-7b-v1.5",), reply="vicuna here")
    qwen = start_worker(("qwen-7b-chat",), reply="qwen here", conv_template="qwen-7b-chat")
    backend = make()
    assert "".join(ask(backend)) == "vicuna here"
    assert "".join(ask(backend, model="qwen-7b-chat")) == "qwen here"
    assert [body["model"] for body in vicuna.generate_requests()] == ["vicuna-7b-v1.5"]
    assert [body["model"] for body in qwen.generate_requests()] == ["qwen-7b-chat"]


def test_streams_only_the_new_suffix_of_each_cumulative_text(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    start_worker(reply="Hello world!", chunk_size=3)
    assert ask(make()) == ["Hel", "lo ", "wor", "ld!"]


def test_pieces_arrive_while_the_answer_is_generated(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    """The first piece is read while the worker still holds the rest (no clock: the test sets the pace)."""
    worker = start_worker(reply="abcdefgh", chunk_size=2, hold_after_chunks=1)
    pieces = make().stream([{"role": "user", "content": "hi"}])
    assert next(pieces) == "ab"  # the worker holds the rest until it is released below
    worker.wait_holding()
    worker.release()
    assert list(pieces) == ["cd", "ef", "gh"]


def test_partly_decoded_characters_are_held_back(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    start_worker(stream_texts=("你", "你\ufffd", "你好", "你好！"))
    assert ask(make()) == ["你", "好", "！"]


def test_vicuna_prompt_for_a_system_message_and_two_turns(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    worker = start_worker()
    ask(make(llm_max_tokens=100, llm_temperature=0.3), CONVERSATION)
    [body] = worker.generate_requests()
    # FastChat's documented Vicuna v1.1 format: "<system> USER: <q> ASSISTANT: <a></s>USER: <q> ASSISTANT:"
    assert body["prompt"] == (
        "You are terse. USER: Hi ASSISTANT: Hello! How can I help?</s>USER: What is 2+2? ASSISTANT:"
    )
    assert body["max_new_tokens"] == 100
    assert body["temperature"] == 0.3
    assert body["echo"] is False
    assert body["stop"] == []
    assert body["stop_token_ids"] == []


def test_without_a_system_message_the_templates_own_is_kept(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    worker = start_worker()
    ask(make(), [{"role": "user", "content": "Hi"}])
    assert worker.prompts == [f"{VICUNA_SYSTEM} USER: Hi ASSISTANT:"]


def test_the_workers_own_template_and_stop_words_are_used(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    worker = start_worker(("qwen-7b-chat",), conv_template="qwen-7b-chat")
    ask(make(fastchat_model="qwen-7b-chat"), CONVERSATION)
    [body] = worker.generate_requests()
    assert body["prompt"] == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert body["stop"] == ["<|endoftext|>"]
    assert body["stop_token_ids"] == [151643, 151644, 151645]


def test_a_worker_without_a_template_gets_vicuna(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    worker = start_worker(conv_template=None)
    ask(make(), [{"role": "user", "content": "Hi"}])
    assert worker.prompts == [f"{VICUNA_SYSTEM} USER: Hi ASSISTANT:"]


def test_the_fallback_template_is_a_setting(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    worker = start_worker(conv_template=None)
    ask(make(fastchat_conv_template="qwen-7b-chat"), [{"role": "user", "content": "Hi"}])
    assert worker.prompts[0].startswith("<|im_start|>system")
    assert worker.prompts[0].endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_an_unknown_fallback_template_stops_startup_naming_the_setting(controller: FakeController) -> None:
    with pytest.raises(ConfigError, match=r"FASTCHAT_CONV_TEMPLATE.*'vicuna_v1\.1'"):
        settings_for(controller.url, fastchat_conv_template="vicuna")


@pytest.mark.parametrize(
    ("code", "name", "kind"),
    [
        (50001, "INTERNAL_ERROR", "failed"),
        (50002, "CUDA_OUT_OF_MEMORY", "failed"),
        (50006, "CONTROLLER_WORKER_TIMEOUT", "timeout"),
        (42903, "ENGINE_OVERLOADED", "unavailable"),
    ],
)
def test_an_error_code_in_the_stream_is_an_llm_error(
    start_worker: StartWorker, make: Callable[..., FastChatBackend], code: int, name: str, kind: str
) -> None:
    start_worker(reply="abcdefgh", chunk_size=4, error_code=code, error_after_chunks=1)
    pieces: list[str] = []
    with pytest.raises(LLMError) as caught:
        pieces.extend(text_only(make().stream([{"role": "user", "content": "hi"}])))
    assert pieces == ["abcd"]
    assert caught.value.kind == kind
    assert f"{code} {name}" in caught.value.detail
    assert "NETWORK ERROR" in caught.value.detail


def test_no_worker_for_the_model_is_unavailable_and_logged(
    start_worker: StartWorker, make: Callable[..., FastChatBackend], caplog: pytest.LogCaptureFixture
) -> None:
    start_worker(("vicuna-7b-v1.5",))
    with caplog.at_level(logging.WARNING), pytest.raises(LLMError) as caught:
        ask(make(), model="llama-70b")
    assert caught.value.kind == "unavailable"
    assert caught.value.detail == "no FastChat worker serves model llama-70b"
    assert "no FastChat worker serves model llama-70b" in caplog.text


def test_a_worker_dying_before_its_first_chunk_is_replaced(
    start_worker: StartWorker, make: Callable[..., FastChatBackend], caplog: pytest.LogCaptureFixture
) -> None:
    dying = start_worker(reply="from the first", die_after_chunks=0)
    healthy = start_worker(reply="from the second")
    with caplog.at_level(logging.WARNING):
        assert "".join(ask(make())) == "from the second"
    assert len(dying.generate_requests()) == 1
    assert len(healthy.generate_requests()) == 1
    assert "failed before answering" in caplog.text


def test_a_worker_that_is_gone_is_replaced(
    controller: FakeController, start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    controller.register(closed_port_url(), (DEFAULT_MODEL,))  # died; the controller has not noticed
    start_worker(reply="still here")
    assert "".join(ask(make())) == "still here"


def test_a_second_failure_before_any_chunk_is_unavailable(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    worker = start_worker(die_after_chunks=0)
    with pytest.raises(LLMError) as caught:
        ask(make())
    assert caught.value.kind == "unavailable"
    assert len(worker.generate_requests()) == 2


def test_workers_sending_empty_streams_are_an_outage_not_an_empty_answer(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    """A worker whose stream ends before its first object (an OOM'd or restarting model) is gone: the
    user is told the service has a problem, not asked to put the question otherwise."""
    worker = start_worker(stream_texts=(), finish_reason=None)
    with pytest.raises(LLMError) as caught:
        ask(make())
    assert caught.value.kind == "unavailable" and "empty stream" in caught.value.detail
    assert describe(caught.value).text == texts.LLM_FAILED
    assert len(worker.generate_requests()) == 2


def test_a_worker_dying_mid_answer_fails_without_retry(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    dying = start_worker(reply="abcdefgh", chunk_size=4, die_after_chunks=1)
    other = start_worker(reply="should not be asked")
    pieces: list[str] = []
    with pytest.raises(LLMError) as caught:
        pieces.extend(text_only(make().stream([{"role": "user", "content": "hi"}])))
    assert pieces == ["abcd"]
    assert caught.value.kind == "failed"
    assert "died mid-answer" in caught.value.detail
    assert len(dying.generate_requests()) == 1
    assert other.generate_requests() == []


def test_a_silent_worker_times_out(start_worker: StartWorker, make: Callable[..., FastChatBackend]) -> None:
    start_worker(chunk_delay=3.0)
    with pytest.raises(LLMError) as caught:
        ask(make(fastchat_timeout=0.3))
    assert caught.value.kind == "timeout"


def history(turns: int, size: int) -> list[ChatMessage]:
    """`turns` old question/answer pairs of `size` characters each, marked by their letter."""
    messages: list[ChatMessage] = []
    for turn in range(turns):
        messages.append({"role": "user", "content": chr(ord("a") + 2 * turn) * size})
        messages.append({"role": "assistant", "content": chr(ord("b") + 2 * turn) * size})
    return messages


def test_oldest_turns_are_dropped_to_fit_the_context(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    worker = start_worker(context_length=600)  # the fake tokenizer counts one token per character
    messages = [{"role": "system", "content": "SYS"}, *history(2, 200), {"role": "user", "content": "now?"}]
    ask(make(llm_max_tokens=64), messages)
    [body] = worker.generate_requests()
    prompt = body["prompt"]
    assert prompt == f"SYS USER: {'c' * 200} ASSISTANT: {'d' * 200}</s>USER: now? ASSISTANT:"
    assert len(prompt) + body["max_new_tokens"] + 1 <= 600
    assert body["max_new_tokens"] == 64


def test_a_long_question_gets_fewer_answer_tokens(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    worker = start_worker(context_length=600)
    messages = [
        {"role": "system", "content": "SYS"},
        *history(1, 100),
        {"role": "user", "content": "q" * 500},
    ]
    ask(make(llm_max_tokens=200), messages)
    [body] = worker.generate_requests()
    assert "a" * 100 not in body["prompt"]
    assert body["max_new_tokens"] == 600 - len(body["prompt"]) - 1
    assert 64 <= body["max_new_tokens"] < 200


def test_a_question_longer_than_the_context_fails(
    start_worker: StartWorker, make: Callable[..., FastChatBackend]
) -> None:
    worker = start_worker(context_length=600)
    with pytest.raises(LLMError) as caught:
        ask(make(), [{"role": "user", "content": "q" * 700}])
    assert caught.value.kind == "failed"
    assert "question too long" in caught.value.detail
    assert worker.generate_requests() == []


def test_tokens_are_estimated_when_the_worker_cannot_count(
    start_worker: StartWorker, make: Callable[..., FastChatBackend], caplog: pytest.LogCaptureFixture
) -> None:
    worker = start_worker(context_length=600, count_tokens=None)
    old = [{"role": "user", "content": "你" * 200}, {"role": "assistant", "content": "好" * 200}]
    with caplog.at_level(logging.WARNING):
        ask(make(llm_max_tokens=64), [*old, {"role": "user", "content": "现在呢？"}])
    assert worker.prompts == [f"{VICUNA_SYSTEM} USER: 现在呢？ ASSISTANT:"]
    assert len(worker.requests_to("/count_token")) == 1
    assert "cannot count tokens" in caplog.text


def test_token_estimate_counts_chinese_characters_as_more_than_a_quarter() -> None:
    assert estimate_tokens("abcdefgh") == 2
    assert estimate_tokens("你好") == 3


def test_an_unreachable_controller_is_unavailable(make: Callable[..., FastChatBackend]) -> None:
    backend = make(closed_port_url())
    with pytest.raises(LLMError) as caught:
        ask(backend)
    assert caught.value.kind == "unavailable"
    with pytest.raises(LLMError) as caught:
        backend.models()
    assert caught.value.kind == "unavailable"


def test_split_stream_joins_and_splits_objects_across_chunks() -> None:
    chunks = [
        b'{"text": "a", "err',
        b'or_code": 0}\x00{"text": "ab", "error_code": 0}\x00{"te',
        b'xt": "abc"}\x00',
    ]
    assert [obj["text"] for obj in split_stream(chunks)] == ["a", "ab", "abc"]
    with pytest.raises(WorkerGone):
        list(split_stream([b'{"text": "a"}\x00{"text": "ab"']))


def test_the_whole_bot_answers_through_fastchat(
    make_bot: Callable[..., Any], controller: FakeController, start_worker: StartWorker
) -> None:
    worker = start_worker(reply="你好，我是 Vicuna。")
    bot = make_bot(
        llm_backend="fastchat", fastchat_controller_url=controller.url, fastchat_model=DEFAULT_MODEL
    )
    assert bot.simulator().send_text("u1", "hi").text == "你好，我是 Vicuna。"
    [prompt] = worker.prompts
    assert prompt.endswith(" USER: hi ASSISTANT:")
    assert prompt.startswith(bot.runtime.settings.system_prompt)


@pytest.mark.parametrize(
    ("finish_reason", "detail"), [("length", "length"), (None, "without its last event")]
)
def test_an_answer_cut_short_says_so(
    start_worker: StartWorker, make: Callable[..., FastChatBackend], finish_reason: str | None, detail: str
) -> None:
    """The text streams as usual, then the backend says the answer did not reach its end."""
    start_worker(reply="Hello world!", chunk_size=3, finish_reason=finish_reason)
    backend, pieces = make(), []
    with pytest.raises(LLMError) as failure:
        for piece in text_only(backend.stream([{"role": "user", "content": "hi"}])):
            pieces.append(piece)
    assert "".join(pieces) == "Hello world!"
    assert failure.value.kind == "cut_short" and detail in failure.value.detail
