"""Task experts (bot/experts/): the rules on realistic questions, EXPERTS and its companions as settings,
the classifier's constrained answer, which choice wins, and the cached list of served models."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis

from bot.config import EXPERT_TASKS, ConfigError, Settings, load_settings, parse_experts
from bot.experts import ExpertRouter, Route
from bot.experts.classifier import Classifier, task_named
from bot.experts.rules import ANALYSIS_MIN_CHARS, Rules
from bot.experts.served import FAILED_TTL, SERVED_TTL, ServedModels
from bot.llm import LLMError
from bot.store.metrics import Metrics

BASE = {"wechat_token": "t", "redis_url": "redis://127.0.0.1:6379/0", "openai_api_key": "k"}
EXPERTS = "咨询:fin-consult,计算:fin-calc,检索:fin-rag,分析:fin-text"
REPORT = (
    "请帮我总结一下这篇公告的要点：公司2024年实现营业收入58.3亿元，同比增长12.4%；归母净利润7.9亿元，"
    "同比增长8.1%。报告期内新增产能两条，海外收入占比提升至23%。公司拟每10股派发现金红利3元，"
    "并计划在未来三年投入15亿元用于研发。管理层表示将继续推进降本增效。"
)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules()


# --- the rules ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("question", "task"),
    [
        # numbers and a computing word
        ("我有10万元，年化收益率3.5%，按复利算5年后是多少？", "计算"),
        ("帮我算一下房贷月供：贷款100万，30年，利率4.1%", "计算"),
        ("鸡兔同笼，头35个，脚94只，鸡兔各几只？", "计算"),
        ("去年营收两千万，今年两千五百万，同比增长多少", "计算"),
        ("三年期定期存款利率是百分之二点七五，存五万到期利息多少", "计算"),
        ("1+2*3等于几", "计算"),
        ("标准正态分布大于1.96的概率是多少", "计算"),
        ("ＡＢ两只股票３０元买入，现价３６元，涨了百分之几", "计算"),  # full-width digits count
        ("一百万存银行一年利息能有多少", "计算"),  # Chinese numerals count
        ("(1+5%)^3 - 1", "计算"),  # an expression alone
        ("1.5-0.3", "计算"),  # a - with a decimal is arithmetic
        ("10-(2+3)", "计算"),
        ("100-4=", "计算"),
        ("2024-06-01到2024-12-31有多少天", "计算"),  # a date with a computing word
        # a bare - or / between whole numbers is a date, a phone number, a range
        ("2024-06-01的直播活动在哪里看？", None),
        ("客服电话400-820-8820是哪个部门的", None),
        ("3-5岁孩子适合什么绘本？", "咨询"),
        ("6/1儿童节有活动吗", None),
        # advice and choices
        ("计算机专业毕业后怎么选择工作方向", "咨询"),  # 计算机 is not 计算
        ("我打算明年买房，预算三百万，有什么建议", "咨询"),  # a number, but nothing to compute
        ("这笔钱几乎全亏了怎么办", "咨询"),  # 几乎 is not 几
        ("一些人说万一亏了怎么办", "咨询"),
        ("年轻人该不该买指数基金", "咨询"),
        ("沪深300和中证500哪个更好", "咨询"),
        ("30岁如何配置资产", "咨询"),
        # analysis of a long text
        (REPORT, "分析"),  # numbers everywhere, but a text to sum up comes first
        # unclear: no rule holds
        ("如何成为一名证券分析师", None),  # 分析师 is not 分析
        ("我打算下个月买5万的基金", None),  # 打算下个月 has no 算 下 in it
        ("今天天气怎么样", None),
        ("什么是市盈率", None),
        ("请分析一下茅台的走势", None),  # analysis, but no text of its own
    ],
)
def test_the_rules_tell_the_task_of_realistic_questions(
    rules: Rules, question: str, task: str | None
) -> None:
    assert rules.task(question, kb_hit=False, tasks=EXPERT_TASKS) == task


def test_a_knowledge_base_hit_is_retrieval_unless_there_is_something_to_compute(rules: Rules) -> None:
    assert rules.task("公司的年假制度是怎样的", kb_hit=True, tasks=EXPERT_TASKS) == "检索"
    assert rules.task("年假制度适合我吗，有什么建议", kb_hit=True, tasks=EXPERT_TASKS) == "检索"
    assert rules.task("产品A年化3%，存10万一年利息多少", kb_hit=True, tasks=EXPERT_TASKS) == "计算"
    assert rules.task("公司的年假制度是怎样的", kb_hit=False, tasks=EXPERT_TASKS) is None


@pytest.mark.parametrize(
    "question",
    ["2024-06-01的直播活动在哪里看？", "客服电话400-820-8820是哪个部门的", "3-5岁孩子适合什么绘本？"],
)
def test_a_date_phone_number_or_range_with_a_knowledge_base_hit_is_retrieval(
    rules: Rules, question: str
) -> None:
    """Their - is not a subtraction: nothing to compute, so the knowledge base's passage answers."""
    assert rules.task(question, kb_hit=True, tasks=EXPERT_TASKS) == "检索"


def test_only_the_tasks_experts_names_are_chosen(rules: Rules) -> None:
    """A question that is also advice goes to 咨询 when 计算 has no expert."""
    question = "工资8000每月该存多少钱，有什么建议"
    assert rules.task(question, kb_hit=False, tasks=EXPERT_TASKS) == "计算"
    assert rules.task(question, kb_hit=False, tasks=["咨询"]) == "咨询"
    assert rules.task(question, kb_hit=True, tasks=["分析"]) is None


def test_analysis_needs_a_long_text(rules: Rules) -> None:
    short = "总结一下：" + "营收增长。" * 3
    long = "总结一下：" + "营收增长。" * (ANALYSIS_MIN_CHARS // 5)
    assert rules.task(short, kb_hit=False, tasks=["分析"]) is None
    assert rules.task(long, kb_hit=False, tasks=["分析"]) == "分析"


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("三百万", True),
        ("两千五百", True),
        ("百分之五", True),
        ("七成", True),
        ("10", True),
        ("万一", False),
        ("十分", False),
        ("一点", False),
        ("一", False),
        ("千万", False),
    ],
)
def test_which_words_of_chinese_numerals_are_numbers(rules: Rules, text: str, number: bool) -> None:
    assert rules.has_number(text, [text]) is number


def test_the_words_come_from_the_words_file(tmp_path: Path) -> None:
    """An operator changes the vocabulary in words.toml, not in the code."""
    path = tmp_path / "words.toml"
    path.write_text('["咨询"]\nwords = ["靠谱吗"]\n', encoding="utf-8")
    mine = Rules(path)
    assert mine.task("这个理财产品靠谱吗", kb_hit=False, tasks=EXPERT_TASKS) == "咨询"
    assert mine.task("年轻人该不该买指数基金", kb_hit=False, tasks=EXPERT_TASKS) is None


# --- the settings ------------------------------------------------------------------------------------
def test_experts_are_task_model_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPERTS", EXPERTS)
    assert load_settings(**BASE).experts == {
        "咨询": "fin-consult",
        "计算": "fin-calc",
        "检索": "fin-rag",
        "分析": "fin-text",
    }


def test_full_width_separators_typed_in_chinese_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPERTS", "咨询：fin-consult，计算：fin-calc")
    assert load_settings(**BASE).experts == {"咨询": "fin-consult", "计算": "fin-calc"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fin-calc", r"EXPERTS: 'fin-calc' is not TASK:MODEL"),
        ("计算:", r"EXPERTS: '计算:' is not TASK:MODEL"),
        (":fin-calc", r"EXPERTS: ':fin-calc' is not TASK:MODEL"),
        ("计算:a,计算:b", r"EXPERTS: task '计算' is named twice"),
        ("翻译:fin-mt,计算:fin-calc", r"EXPERTS: unknown tasks \['翻译'\] \(known: 咨询, 计算, 检索, 分析\)"),
    ],
)
def test_a_malformed_experts_stops_startup_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("EXPERTS", value)
    with pytest.raises(ConfigError, match=message):
        load_settings(**BASE)


def test_the_classifier_needs_experts_and_a_server() -> None:
    with pytest.raises(ConfigError, match="EXPERT_CLASSIFIER_MODEL: set, but EXPERTS is empty"):
        load_settings(**BASE, expert_classifier_model="clf")
    no_key = {**BASE, "openai_api_key": "", "llm_backend": "fastchat", "fastchat_controller_url": "http://c"}
    with pytest.raises(ConfigError, match="EXPERT_CLASSIFIER_MODEL: is called through the OpenAI API"):
        load_settings(**no_key, experts=parse_experts(EXPERTS), expert_classifier_model="clf")
    settings = load_settings(
        **no_key,
        experts=parse_experts(EXPERTS),
        expert_classifier_model="clf",
        expert_classifier_base_url="http://127.0.0.1:8001/v1/",
    )
    assert settings.expert_classifier_base_url == "http://127.0.0.1:8001/v1"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"<html>502 Bad Gateway</html>", "text/html"),
        (b'{"choices": [{"message": null}]}', "application/json"),
    ],
    ids=["html-page", "message-null"],
)
def test_a_classifier_answer_of_another_shape_leaves_the_question_unclear(body: bytes, kind: str) -> None:
    """A proxy's page with status 200 (or a message without content) raised outside the error handling:
    the question then failed with 「AI 服务暂时出了问题」 instead of going to the default model."""

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Answer) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        settings = load_settings(
            **BASE,
            experts=parse_experts(EXPERTS),
            expert_classifier_model="clf",
            expert_classifier_base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
        )
        classifier = Classifier(settings)
        try:
            assert classifier.task("今天天气怎么样", list(EXPERT_TASKS)) is None
        finally:
            classifier.close()
            server.shutdown()


@pytest.mark.parametrize("timeout", [0, -1, 11])
def test_the_classifier_timeout_is_short_and_positive(timeout: float) -> None:
    with pytest.raises(ConfigError, match="EXPERT_CLASSIFIER_TIMEOUT"):
        load_settings(**BASE, expert_classifier_timeout=timeout)


# --- the classifier's answer -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "task"),
    [
        ("计算", "计算"),
        (" 计算。\n", "计算"),
        ("“分析”", "分析"),
        ("其他", None),
        ("这是计算题", None),  # a sentence is not an answer
        ("检索", None),  # not one of the tasks offered
        ("", None),
    ],
)
def test_only_a_task_offered_is_an_answer(answer: str, task: str | None) -> None:
    assert task_named(answer, ["咨询", "计算", "分析"]) == task


def test_the_classification_request_lists_the_tasks_offered() -> None:
    [system, user] = Classifier.messages("问" * 600, ["计算", "分析"])
    assert "计算：" in system["content"] and "分析：" in system["content"]
    assert "咨询" not in system["content"]
    assert user == {"role": "user", "content": "问" * 500}


# --- which choice wins -------------------------------------------------------------------------------
class ScriptedClassifier:
    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def task(self, question: str, tasks: Sequence[str]) -> str | None:
        self.asked.append(question)
        return self.answer if self.answer in tasks else None

    def close(self) -> None:
        pass


def make_router(
    redis_client: redis.Redis,
    served: Sequence[str] | None = ("fin-consult", "fin-calc", "fin-rag", "fin-text", "base"),
    classifier: ScriptedClassifier | None = None,
    experts: str = EXPERTS,
) -> ExpertRouter:
    settings = load_settings(**BASE, experts=parse_experts(experts) if experts else {})

    def listing() -> list[str]:
        if served is None:
            raise LLMError("unavailable", "controller down")
        return list(served)

    metrics = Metrics(redis_client, ZoneInfo("Asia/Shanghai"))
    return ExpertRouter(settings, ServedModels(listing), metrics, "base", classifier)  # type: ignore[arg-type]


def test_a_followers_model_choice_wins_over_the_rules(redis_client: redis.Redis) -> None:
    classifier = ScriptedClassifier("计算")
    router = make_router(redis_client, classifier=classifier)
    assert router.route("1+1等于几", chosen="gpt-4o", kb_hit=True) == Route("", "gpt-4o", "user")
    assert router.route("今天天气怎么样", chosen="gpt-4o", kb_hit=False) == Route("", "gpt-4o", "user")
    assert classifier.asked == []  # not even asked


def test_rules_then_classifier_then_the_default(redis_client: redis.Redis) -> None:
    classifier = ScriptedClassifier("分析")
    router = make_router(redis_client, classifier=classifier)
    assert router.route("1+1等于几", chosen=None, kb_hit=False) == Route("计算", "fin-calc", "rule")
    assert classifier.asked == []
    unclear = "今天天气怎么样"
    assert router.route(unclear, chosen=None, kb_hit=False) == Route("分析", "fin-text", "classifier")
    classifier.answer = None
    assert router.route(unclear, chosen=None, kb_hit=False) == Route("", "base", "unclear")
    assert make_router(redis_client).route("今天天气怎么样", chosen=None, kb_hit=False).reason == "unclear"


def test_an_expert_not_served_falls_back_to_the_default_model(redis_client: redis.Redis) -> None:
    router = make_router(redis_client, served=["base", "fin-consult"])
    route = router.route("1+1等于几", chosen=None, kb_hit=False)
    assert route == Route("计算", "base", "fallback", wanted="fin-calc")
    assert router.route("该不该买基金", chosen=None, kb_hit=False) == Route("咨询", "fin-consult", "rule")


def test_when_the_models_cannot_be_listed_the_experts_are_trusted(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    router = make_router(redis_client, served=None)
    with caplog.at_level(logging.WARNING, logger="bot.experts.served"):
        assert router.route("1+1等于几", chosen=None, kb_hit=False) == Route("计算", "fin-calc", "rule")
    assert "could not be listed (controller down); trusting EXPERTS" in caplog.text


def test_without_experts_the_router_is_off(redis_client: redis.Redis) -> None:
    router = make_router(redis_client, experts="")
    assert not router.enabled and router.rules is None and router.classifier is None


def test_each_answer_is_logged_and_counted_with_its_expert(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    router = make_router(redis_client)
    with caplog.at_level(logging.INFO, logger="bot.experts.router"):
        router.record("a1", Route("计算", "fin-calc", "rule"))
        router.record("a2", Route("计算", "base", "fallback", wanted="fin-calc"))
        router.record("a3", Route("", "base", "unclear"))
    assert [r.getMessage() for r in caplog.records] == [
        "answer a1: expert 计算, model fin-calc (rule)",
        "answer a2: expert 计算, model base (fallback: fin-calc is not served)",
        "answer a3: expert none, model base (unclear)",
    ]
    assert caplog.records[1].levelno == logging.WARNING
    counter = router.metrics.counter("answers_by_expert")
    counted = {tuple(json.loads(label).values()): value for label, value in counter.items()}
    assert counted == {
        ("计算", "fin-calc", "rule"): 1,
        ("计算", "base", "fallback"): 1,
        ("none", "base", "unclear"): 1,
    }


# --- the served models -------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_model_list_is_kept_for_a_while() -> None:
    calls: list[int] = []
    models = ["a"]

    def listing() -> list[str]:
        calls.append(1)
        return list(models)

    clock = Clock()
    served = ServedModels(listing, clock)
    assert served.serves("a") is True and served.serves("b") is False
    models.append("b")
    clock.now += SERVED_TTL - 0.1
    assert served.serves("b") is False and len(calls) == 1
    clock.now += 0.2
    assert served.serves("b") is True and len(calls) == 2


def test_a_failed_listing_is_not_retried_at_once() -> None:
    calls: list[int] = []

    def listing() -> list[str]:
        calls.append(1)
        if len(calls) == 1:
            raise LLMError("unavailable", "down")
        return ["a"]

    clock = Clock()
    served = ServedModels(listing, clock)
    assert served.serves("a") is None
    clock.now += FAILED_TTL - 0.1
    assert served.serves("a") is None and len(calls) == 1
    clock.now += 0.2
    assert served.serves("a") is True and len(calls) == 2


def test_experts_keep_the_order_they_were_written_in() -> None:
    """The classifier lists the tasks in it."""
    settings: Settings = load_settings(**BASE, experts=parse_experts("分析:x,咨询:y"))
    assert list(settings.experts) == ["分析", "咨询"]
