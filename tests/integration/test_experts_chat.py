"""Task experts through the whole stack: questions sent as followers send them, routed by the rules (and
by the classifier on the loopback OpenAI fake), answered by a loopback FastChat cluster whose one worker
serves a base model and its LoRA experts under their own names (as `fastchat.serve.multi_model_worker`
does) — asserting which model each request reached."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from bot import texts
from bot.config import parse_experts
from bot.knowledge.documents import Block, Document
from bot.ops.check import run_checks
from handlers.commands import stats_command
from testing.fakes.fastchat import FakeController, FakeWorker
from testing.fakes.openai_server import FakeOpenAI, tiny_png
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.reading import read_answer
from tests.conftest import Bot

BASE_MODEL = "fin-base"
VISION = "gpt-4o-vision"
EXPERTS = parse_experts("咨询:fin-consult,计算:fin-calc,检索:fin-rag,分析:fin-text")
COMPUTE = "帮我算一下：贷款100万，30年，利率4.1%，月供多少？"
CONSULT = "年轻人该不该买指数基金？"
UNCLEAR = "今天天气怎么样"
RETRIEVE = "行业轮动模型这个月推荐超配哪些行业？"
REPORT = (
    "请帮我总结一下这篇公告的要点：公司2024年实现营业收入58.3亿元，同比增长12.4%；归母净利润7.9亿元，"
    "同比增长8.1%。报告期内新增产能两条，海外收入占比提升至23%。公司拟每10股派发现金红利3元，"
    "并计划在未来三年投入15亿元用于研发。管理层表示将继续推进降本增效。"
)


@pytest.fixture
def controller() -> Iterator[FakeController]:
    with FakeController() as fake:
        yield fake


@pytest.fixture
def start_worker(controller: FakeController) -> Iterator[Callable[..., FakeWorker]]:
    """One worker serving several models, as a multi_model_worker with LoRA adapters registers."""
    workers: list[FakeWorker] = []

    def start(*models: str) -> FakeWorker:
        worker = FakeWorker((BASE_MODEL, *models), reply="好的。").start()
        workers.append(worker)
        controller.register(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def cluster_bot(make_bot: Callable[..., Bot], controller: FakeController) -> Callable[..., Bot]:
    def make(**overrides: Any) -> Bot:
        return make_bot(
            llm_backend="fastchat",
            fastchat_controller_url=controller.url,
            fastchat_model=BASE_MODEL,
            experts=EXPERTS,
            **overrides,
        )

    return make


def model_reached(worker: FakeWorker, question: str) -> str:
    """The model of the one generate request whose prompt carries the question."""
    [model] = [body["model"] for body in worker.generate_requests() if question in str(body["prompt"])]
    return str(model)


def ask(bot: Bot, openid: str, question: str) -> None:
    """Ask as a follower and read the whole answer (a grounded one ends with its sources)."""
    assert read_answer(bot.simulator(), openid, question).text.startswith("好的。")


def add_rotation_report(bot: Bot) -> None:
    text = "十二月行业轮动模型推荐超配银行、煤炭和电力设备三个行业，模型年化超额收益为12.5%。"
    document = Document("行业轮动月报", [Block(text)], source="wechat", key="x:rotation")
    bot.runtime.knowledge.add(document)


def test_each_question_reaches_the_expert_for_its_task(
    cluster_bot: Callable[..., Bot], start_worker: Callable[..., FakeWorker]
) -> None:
    worker = start_worker("fin-consult", "fin-calc", "fin-rag", "fin-text")
    bot = cluster_bot()
    add_rotation_report(bot)
    questions = {COMPUTE: "fin-calc", CONSULT: "fin-consult", REPORT: "fin-text", RETRIEVE: "fin-rag"}
    questions[UNCLEAR] = BASE_MODEL
    for number, question in enumerate(questions):
        ask(bot, f"user-{number}", question)
    assert {question: model_reached(worker, question) for question in questions} == questions
    stats = stats_command(SimpleNamespace(runtime=bot.runtime), "")  # type: ignore[arg-type]
    assert isinstance(stats, str)
    [line] = [line for line in stats.splitlines() if line.startswith("今日专家：")]
    assert line == (
        "今日专家：分析/fin-text/规则 1，咨询/fin-consult/规则 1，无专家/fin-base/未判定 1，"
        "检索/fin-rag/规则 1，计算/fin-calc/规则 1"
    )


def test_an_expert_that_is_not_served_falls_back_to_the_default_model(
    cluster_bot: Callable[..., Bot], start_worker: Callable[..., FakeWorker], caplog: pytest.LogCaptureFixture
) -> None:
    worker = start_worker("fin-consult")  # fin-calc is not up
    bot = cluster_bot()
    with caplog.at_level(logging.INFO, logger="bot.experts.router"):
        ask(bot, "user-1", COMPUTE)
        ask(bot, "user-2", CONSULT)
    assert model_reached(worker, COMPUTE) == BASE_MODEL
    assert model_reached(worker, CONSULT) == "fin-consult"
    fallbacks = [r for r in caplog.records if "fallback" in r.getMessage()]
    assert len(fallbacks) == 1 and fallbacks[0].levelno == logging.WARNING
    assert (
        fallbacks[0].getMessage().endswith("expert 计算, model fin-base (fallback: fin-calc is not served)")
    )


def test_a_followers_model_choice_wins_over_the_router(
    cluster_bot: Callable[..., Bot], start_worker: Callable[..., FakeWorker]
) -> None:
    worker = start_worker("fin-consult", "fin-calc")
    bot = cluster_bot(allowed_models=["fin-consult"])
    switched = texts.MODEL_SWITCHED.format(model="fin-consult")
    assert bot.simulator().send_text("chooser", "/model fin-consult").text == switched
    ask(bot, "chooser", COMPUTE)
    ask(bot, "other", COMPUTE + "？")
    assert model_reached(worker, COMPUTE + "？") == "fin-calc"
    asked = [b for b in worker.generate_requests() if str(b["prompt"]).endswith(f"{COMPUTE} ASSISTANT:")]
    assert [body["model"] for body in asked] == ["fin-consult"]


def test_the_classifier_decides_what_the_rules_cannot_and_a_slow_one_is_not_waited_for(
    cluster_bot: Callable[..., Bot],
    start_worker: Callable[..., FakeWorker],
    fake_openai: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = start_worker("fin-consult", "fin-calc", "fin-rag", "fin-text")
    fake_openai.set_behavior(reply="计算")
    bot = cluster_bot(
        expert_classifier_model="fin-router",
        expert_classifier_base_url=fake_openai.base_url,
        expert_classifier_timeout=0.5,
    )
    ask(bot, "user-1", UNCLEAR)
    assert model_reached(worker, UNCLEAR) == "fin-calc"
    [request] = fake_openai.chat_requests()
    assert request["model"] == "fin-router" and request["max_tokens"] == 8 and request["temperature"] == 0
    assert not request.get("stream") and request["messages"][-1] == {"role": "user", "content": UNCLEAR}

    fake_openai.set_behavior(hang=True)  # the classifier never answers
    with caplog.at_level(logging.INFO, logger="bot.experts"):
        ask(bot, "user-2", UNCLEAR + "？")
    assert model_reached(worker, UNCLEAR + "？") == BASE_MODEL
    assert "classifier fin-router gave no answer within 0.5s" in caplog.text
    assert "expert none, model fin-base (unclear)" in caplog.text
    counted = {
        tuple(json.loads(label).values()): value
        for label, value in bot.runtime.metrics.counter("answers_by_expert").items()
    }
    assert counted == {("计算", "fin-calc", "classifier"): 1, ("none", BASE_MODEL, "unclear"): 1}


def test_openai_compatible_servers_route_by_their_model_list(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    """vLLM lists each --lora-modules adapter in /v1/models: those not listed are not asked."""
    fake_openai.set_behavior(models=("gpt-4o-mini", "fin-calc"), reply="好的。")
    bot = make_bot(experts=EXPERTS)
    ask(bot, "user-1", COMPUTE)
    ask(bot, "user-2", CONSULT)
    models = {
        body["messages"][-1]["content"]: body["model"]
        for body in fake_openai.chat_requests()
        if body["messages"][-1]["role"] == "user"
    }
    assert models == {COMPUTE: "fin-calc", CONSULT: "gpt-4o-mini"}


def test_a_question_about_a_photo_keeps_the_vision_model(
    make_bot: Callable[..., Bot],
    fake_openai: FakeOpenAI,
    fake_wechat: FakeWeChatAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_openai.set_behavior(
        models=("gpt-4o-mini", "fin-calc", VISION), vision_models=(VISION,), reply="好的。"
    )
    fake_wechat.add_media("photo-1", tiny_png(), "image/png")
    bot = make_bot(experts=EXPERTS, vision_model=VISION)
    sim = bot.simulator()
    assert sim.send_image("user-1", "photo-1").text == "好的。"
    with caplog.at_level(logging.INFO, logger="bot.experts.router"):
        ask(bot, "user-1", COMPUTE)  # about the photo: asked with it, of the vision model
    ask(bot, "user-2", COMPUTE + "？")  # no photo: the computing expert
    models = [body["model"] for body in fake_openai.chat_requests()]
    assert models == [VISION, VISION, "fin-calc"]
    assert f"expert none, model {VISION} (vision)" in caplog.text


def test_make_check_names_the_experts_that_are_not_served(
    base_config: dict[str, Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.set_behavior(models=("gpt-4o-mini", "fin-calc", "fin-text"))
    out = io.StringIO()
    assert run_checks(out, **base_config, experts=EXPERTS) == 0
    assert (
        "EXPERTS: not served, their questions go to the default model: 咨询:fin-consult, 检索:fin-rag"
        in out.getvalue()
    )
