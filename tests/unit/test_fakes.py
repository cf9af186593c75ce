"""Tests of the test infrastructure itself: the simulator, the fakes and the embedded Redis."""

from __future__ import annotations

import base64
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import openai
import pytest
import requests
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.events import SubscribeScanEvent
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from bot.ops.redis_server import RedisServer, find_redis_server, ping
from testing.fakes.base import FakeHandler, FakeServer, RecordedRequest
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.simulator import MsgIdGenerator, ReplyViolation, WeChatSimulator, decrypt, encrypt, sign

TOKEN = "sim-token"
APPID = "wx0123456789abcdef"
SECRET = "sim-secret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
USER = "oUSER_0001"

Answer = Callable[[RecordedRequest], tuple[int, bytes]]


class Webhook(FakeServer):
    """A scripted stand-in for our webhook: `answer(request) -> (status, body)`."""

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer

    def handle(self, handler: FakeHandler, request: RecordedRequest) -> None:
        status, body = self.answer(request)
        handler.send_bytes(body, "text/xml; charset=utf-8", status)


def wechatpy_safe_answer(reply_appid: str = APPID) -> Answer:
    """A webhook written with wechatpy, in safe mode: decrypt, then reply 'got: <content>' encrypted."""
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    reply_crypto = WeChatCrypto(TOKEN, AES_KEY, reply_appid)

    def answer(request: RecordedRequest) -> tuple[int, bytes]:
        q = request.query
        xml = crypto.decrypt_message(request.body, q["msg_signature"], q["timestamp"], q["nonce"])
        message = parse_message(xml)
        reply = TextReply(message=message, content=f"got: {message.content}").render()
        return 200, reply_crypto.encrypt_message(reply, q["nonce"], q["timestamp"]).encode()

    return answer


@pytest.fixture
def webhook() -> Iterator[Callable[[Answer], Webhook]]:
    servers: list[Webhook] = []

    def make(answer: Answer) -> Webhook:
        servers.append(Webhook(answer).start())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


# ---- simulator: signatures, crypto, XML ------------------------------------------------------------
def test_signature_matches_the_official_vector() -> None:
    assert sign("AAAAA", "1714036504", "1514711492") == "f464b24fc39322e44b38aa78f5edd27bd1441696"


def test_signed_params_pass_wechatpy_check() -> None:
    sim = WeChatSimulator("http://127.0.0.1:1/wechat", TOKEN, APPID, clock=lambda: 1714036504.7)
    params = sim.signed_params(USER)
    assert params["timestamp"] == "1714036504" and params["openid"] == USER
    check_signature(TOKEN, params["signature"], params["timestamp"], params["nonce"])


@pytest.mark.parametrize("mode", ["compat", "safe"])
def test_encrypted_push_decrypts_with_wechatpy(mode: str) -> None:
    sim = WeChatSimulator("http://127.0.0.1:1/wechat", TOKEN, APPID, AES_KEY, mode=mode)
    xml = sim.text_xml(USER, "你好 ]]> <b>&")
    body, encrypted = sim.envelope(xml)
    assert encrypted is not None
    params = sim.signed_params(USER, encrypted)
    assert params["encrypt_type"] == "aes"
    # wechatpy wants msg_signature in its parameter named `signature`
    plain = WeChatCrypto(TOKEN, AES_KEY, APPID).decrypt_message(
        body, params["msg_signature"], params["timestamp"], params["nonce"]
    )
    assert plain == xml
    assert parse_message(plain).content == "你好 ]]> <b>&"
    assert (b"<Content>" in body) == (mode == "compat")


def test_decrypt_reads_wechatpy_encryption_and_checks_padding() -> None:
    reply = WeChatCrypto(TOKEN, AES_KEY, APPID).encrypt_message("<xml><A>1</A></xml>", "123", "1700000000")
    encrypted = reply.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    assert decrypt(AES_KEY, encrypted) == ("<xml><A>1</A></xml>", APPID)
    raw = bytearray(base64.b64decode(encrypt(AES_KEY, APPID, "<xml/>")))
    raw[-1] ^= 0xFF  # garbles the last block, hence the padding
    with pytest.raises(ValueError):
        decrypt(AES_KEY, base64.b64encode(bytes(raw)).decode())


def test_inbound_xml_parses_with_wechatpy() -> None:
    sim = WeChatSimulator("http://127.0.0.1:1/wechat", TOKEN, APPID, clock=lambda: 1700000000)
    text = parse_message(sim.text_xml(USER, "hi", msg_id=24000000000000001))
    assert (text.id, text.source, text.target, text.content) == (24000000000000001, USER, "gh_test", "hi")
    voice = parse_message(sim.voice_xml(USER, "MEDIA1"))
    assert (voice.media_id, voice.format, voice.recognition) == ("MEDIA1", "amr", None)
    scan = parse_message(sim.subscribe_xml(USER, scene="42"))
    assert isinstance(scan, SubscribeScanEvent) and scan.scene_id == "42" and scan.id == 0
    click = parse_message(sim.click_xml(USER, "MENU_HELP"))
    assert (click.event, click.key, click.create_time.timestamp()) == ("click", "MENU_HELP", 1700000000)
    assert parse_message(sim.location_xml(USER, 23.1, 113.3, label="广州")).label == "广州"


def test_msg_ids_are_unique_across_threads() -> None:
    generate = MsgIdGenerator()
    seen: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        ids = [generate() for _ in range(500)]
        with lock:
            seen.extend(ids)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 4000 and all(0 < i < 2**63 for i in seen)


# ---- simulator: delivery and retries ---------------------------------------------------------------
class _SleepyHandler(BaseHTTPRequestHandler):
    """Takes longer than WeChat waits; records each body it received."""

    bodies: ClassVar[list[bytes]] = []
    release = threading.Event()

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.release.wait(2.0)
        try:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"success")
        except OSError:
            pass  # the simulator has hung up, as WeChat does

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_simulator_retries_a_slow_webhook_three_times() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SleepyHandler)
    server.block_on_close = True  # server_close() joins the handler threads
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/wechat"
        sim = WeChatSimulator(url, TOKEN, APPID, attempt_timeout=0.3)
        delivery = sim.send_text(USER, "slow")
    finally:
        _SleepyHandler.release.set()
        server.shutdown()
        server.server_close()
        thread.join()
    assert [a.status for a in delivery.attempts] == ["timeout"] * 3
    assert delivery.user_sees_failure and not delivery.acknowledged and delivery.text is None
    assert len(_SleepyHandler.bodies) == 3 and len(set(_SleepyHandler.bodies)) == 1
    assert f"<MsgId>{delivery.msg_id}</MsgId>".encode() in _SleepyHandler.bodies[0]
    assert len({a.params["nonce"] for a in delivery.attempts}) == 3
    assert 0.85 < delivery.elapsed < 2.0


def test_success_stops_and_500_or_json_retries(webhook: Callable[[Answer], Webhook]) -> None:
    answers = iter([(500, b"oops"), (200, b'{"ok": true}'), (200, b"success")])
    hook = webhook(lambda request: next(answers))
    delivery = WeChatSimulator(hook.url + "/wechat", TOKEN, APPID, attempt_timeout=2).send_text(USER, "x")
    assert [a.status for a in delivery.attempts] == [500, 200, 200]
    assert delivery.attempts[1].problem is not None and delivery.attempts[1].problem.startswith(
        "invalid reply"
    )
    assert delivery.acknowledged and not delivery.user_sees_failure
    assert len({r.body for r in hook.requests}) == 1
    for request in hook.requests:
        check_signature(TOKEN, request.query["signature"], request.query["timestamp"], request.query["nonce"])


def test_safe_mode_round_trip_through_a_wechatpy_webhook(webhook: Callable[[Answer], Webhook]) -> None:
    hook = webhook(wechatpy_safe_answer())
    sim = WeChatSimulator(hook.url + "/wechat", TOKEN, APPID, AES_KEY, mode="safe", attempt_timeout=2)
    delivery = sim.send_text(USER, "加密 <b>&amp; test")
    assert delivery.text == "got: 加密 <b>&amp; test"
    assert len(delivery.attempts) == 1 and delivery.violations == []
    assert delivery.reply is not None and delivery.reply["ToUserName"] == USER
    # wechatpy writes CDATA without escaping `]]>`: the simulator must see that reply as broken
    broken = sim.send_text(USER, "a ]]> b")
    assert broken.user_sees_failure and "not XML" in (broken.attempts[0].problem or "")


def test_safe_mode_rejects_a_reply_for_another_appid(webhook: Callable[[Answer], Webhook]) -> None:
    hook = webhook(wechatpy_safe_answer(reply_appid="wxOTHER"))
    sim = WeChatSimulator(hook.url + "/wechat", TOKEN, APPID, AES_KEY, mode="safe", attempt_timeout=2)
    delivery = sim.send_text(USER, "x")
    assert delivery.user_sees_failure and len(delivery.attempts) == 3
    assert "appid" in (delivery.attempts[0].problem or "")


def test_reply_violations_and_strict_mode(webhook: Callable[[Answer], Webhook]) -> None:
    def answer(request: RecordedRequest) -> tuple[int, bytes]:
        reply = TextReply(source="gh_test", target="oSOMEONE_ELSE", content="长" * 700)  # 2100 bytes
        return 200, reply.render().encode()

    hook = webhook(answer)
    delivery = WeChatSimulator(hook.url, TOKEN, APPID, attempt_timeout=2).send_text(USER, "x")
    assert delivery.text == "长" * 700 and len(delivery.attempts) == 1
    assert any("ToUserName" in v for v in delivery.violations)
    assert any("2100 bytes" in v for v in delivery.violations)
    with pytest.raises(ReplyViolation):
        WeChatSimulator(hook.url, TOKEN, APPID, attempt_timeout=2, strict=True).send_text(USER, "x")


def test_url_check_and_post_raw_are_signed(webhook: Callable[[Answer], Webhook]) -> None:
    hook = webhook(lambda request: (200, request.query.get("echostr", "").encode()))
    sim = WeChatSimulator(hook.url + "/wechat", TOKEN, APPID)
    assert sim.get_url_check("echo123").text == "echo123"
    assert sim.post_raw(b"<xml>", sign=False).status_code == 200
    query = hook.requests[0].query
    check_signature(TOKEN, query["signature"], query["timestamp"], query["nonce"])
    assert "signature" not in hook.requests[1].query and hook.requests[1].body == b"<xml>"


# ---- RedisServer -----------------------------------------------------------------------------------
def test_redis_server_starts_answers_and_stops(tmp_path: Path) -> None:
    assert Path(find_redis_server()).is_file()
    with RedisServer(tmp_path / "r") as server:
        port = server.port
        assert server.url == f"redis://127.0.0.1:{port}/0" and ping(port)
    assert not ping(port) and not server.running
    assert (tmp_path / "r" / "redis.log").stat().st_size > 0
    assert not list((tmp_path / "r").glob("*.rdb")) and not list((tmp_path / "r").glob("appendonly*"))


def test_redis_server_persists_with_appendonly(tmp_path: Path) -> None:
    with RedisServer(tmp_path, persist=True):
        pass
    assert list(tmp_path.glob("appendonly*"))


# ---- FakeOpenAI through the real SDK ---------------------------------------------------------------
@pytest.fixture
def llm() -> Iterator[tuple[FakeOpenAI, openai.OpenAI]]:
    with FakeOpenAI() as fake, openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as client:
        yield fake, client


def stream_text(client: openai.OpenAI, content: str, parts: list[str] | None = None) -> str:
    parts = [] if parts is None else parts
    chunks = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": content}], stream=True, max_tokens=64
    )
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


def test_openai_stream_and_plain_completion(llm: tuple[FakeOpenAI, openai.OpenAI]) -> None:
    fake, client = llm
    fake.set_behavior(chunk_size=2)
    parts: list[str] = []
    assert stream_text(client, "你好 world", parts) == "echo: 你好 world"
    assert parts[:2] == ["ec", "ho"]
    body = fake.chat_requests()[-1]
    assert body["model"] == "gpt-test" and body["max_tokens"] == 64 and body["stream"] is True
    fake.set_behavior(reply=lambda messages: f"{len(messages)} messages")
    completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "1 messages"
    assert completion.usage is not None and completion.usage.total_tokens > 0


def test_openai_failures(llm: tuple[FakeOpenAI, openai.OpenAI]) -> None:
    fake, client = llm
    fake.set_behavior(fail_status=429, fail_times=1)
    with pytest.raises(openai.RateLimitError):
        stream_text(client, "x")
    assert stream_text(client, "again") == "echo: again"
    fake.set_behavior(fail_status=None, fail_after_chunks=3, chunk_size=1)
    parts: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        stream_text(client, "cut", parts)
    assert "".join(parts) == "ec"  # the role chunk, then two content chunks, then the cut


def test_openai_timeout_mid_stream_is_an_sdk_timeout(llm: tuple[FakeOpenAI, openai.OpenAI]) -> None:
    fake, client = llm
    fake.set_behavior(first_token_delay=5)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        stream_text(client.with_options(timeout=openai.Timeout(0.3, connect=1)), "slow")
    assert time.monotonic() - started < 2


def test_openai_hang_does_not_block_stop() -> None:
    fake = FakeOpenAI(hang=True).start()
    errors: list[BaseException] = []

    def call() -> None:
        with openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as client:
            try:
                stream_text(client, "x")
            except openai.APIError as exc:
                errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)
    started = time.monotonic()
    fake.stop()
    caller.join(5)
    assert time.monotonic() - started < 2 and not caller.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], openai.APIConnectionError)


def test_openai_audio_images_moderation_models(llm: tuple[FakeOpenAI, openai.OpenAI]) -> None:
    fake, client = llm
    audio = b"#!AMR\n\x00\r\n\xff\r\n--x"
    fake.set_behavior(transcript="语音文字", flagged_words=("bomb",), models=("a", "b"))
    assert client.audio.transcriptions.create(model="whisper-1", file=("a.amr", audio)).text == "语音文字"
    assert [(t.filename, t.data, t.model) for t in fake.transcriptions] == [("a.amr", audio, "whisper-1")]
    image = client.images.generate(model="dall-e-3", prompt="cat", response_format="b64_json")
    assert image.data is not None
    png = base64.b64decode(image.data[0].b64_json or "")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    (length,) = struct.unpack(">I", png[8:12])
    assert struct.unpack(">I", png[16 + length : 20 + length])[0] == zlib.crc32(png[12 : 16 + length])
    results = client.moderations.create(input=["a bomb", "a cat"]).results
    assert [r.flagged for r in results] == [True, False]
    assert [m.id for m in client.models.list()] == ["a", "b"]


# ---- FakeWeChatAPI ---------------------------------------------------------------------------------
@pytest.fixture
def wx() -> Iterator[FakeWeChatAPI]:
    with FakeWeChatAPI(APPID, SECRET) as fake:
        yield fake


def stable_token(wx: FakeWeChatAPI, force: bool = False, secret: str = SECRET) -> dict[str, Any]:
    body = {"grant_type": "client_credential", "appid": APPID, "secret": secret, "force_refresh": force}
    result: dict[str, Any] = requests.post(wx.url + "/cgi-bin/stable_token", json=body, timeout=5).json()
    return result


def send_text(wx: FakeWeChatAPI, token: str, content: str) -> int:
    body = {"touser": USER, "msgtype": "text", "text": {"content": content}}
    url = wx.url + "/cgi-bin/message/custom/send"
    errcode: int = requests.post(url, params={"access_token": token}, json=body, timeout=5).json()["errcode"]
    return errcode


def test_wechat_tokens_and_expiry(wx: FakeWeChatAPI) -> None:
    first = stable_token(wx)["access_token"]
    assert stable_token(wx)["access_token"] == first
    assert send_text(wx, first, "hi") == 0 and wx.sent_texts(USER) == ["hi"]
    wx.expire_token()
    assert send_text(wx, first, "late") == 42001
    second = stable_token(wx)["access_token"]
    assert second != first and send_text(wx, second, "ok") == 0
    assert stable_token(wx, force=True)["access_token"] != second
    assert stable_token(wx, secret="wrong")["errcode"] == 40125
    wx.ip_whitelisted = False
    assert "not in whitelist" in stable_token(wx)["errmsg"]
    params = {"grant_type": "client_credential", "appid": "wxBAD", "secret": SECRET}
    assert requests.get(wx.url + "/cgi-bin/token", params=params, timeout=5).json()["errcode"] == 40013
    assert wx.token_fetches == 7
    assert send_text(wx, "", "no token") == 40001 and wx.sent_texts(USER) == ["hi", "ok"]


def test_wechat_send_failures_typing_and_media(wx: FakeWeChatAPI) -> None:
    token = stable_token(wx)["access_token"]
    assert send_text(wx, token, "长" * 683) == 45002  # 2049 bytes
    wx.fail_sends(45047, times=2)
    assert [send_text(wx, token, "x") for _ in range(3)] == [45047, 45047, 0]
    typing = {"touser": USER, "command": "Typing"}
    requests.post(
        wx.url + "/cgi-bin/message/custom/typing", params={"access_token": token}, json=typing, timeout=5
    )
    assert wx.typing_commands(USER) == ["Typing"]
    wx.add_media("VOICE1", b"#!AMR\n...", "audio/amr")
    get = wx.url + "/cgi-bin/media/get"
    assert (
        requests.get(get, params={"access_token": token, "media_id": "VOICE1"}, timeout=5).content
        == b"#!AMR\n..."
    )
    assert (
        requests.get(get, params={"access_token": token, "media_id": "NOPE"}, timeout=5).json()["errcode"]
        == 40007
    )
    upload = wx.url + "/cgi-bin/media/upload"
    files = {"media": ("a.png", b"\x89PNG-data", "image/png")}
    answer = requests.post(
        upload, params={"access_token": token, "type": "image"}, files=files, timeout=5
    ).json()
    assert answer["type"] == "image" and wx.uploads[0].data == b"\x89PNG-data"
    fetched = requests.get(get, params={"access_token": token, "media_id": answer["media_id"]}, timeout=5)
    assert fetched.content == b"\x89PNG-data"
    wx.fail_uploads(48001)
    denied = requests.post(upload, params={"access_token": token, "type": "image"}, files=files, timeout=5)
    assert denied.json()["errcode"] == 48001
