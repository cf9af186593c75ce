"""Photos (VISION_MODEL): an image push, the photo downloaded through the fake media API (or, when
that refuses, from its PicUrl on WeChat's image hosts only), sent to the fake vision model as an image
part; a question right after it is asked with the photo; the history keeps a note, never the image."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from bot import texts
from bot.console.auth import CSRF_FIELD
from bot.media import vision
from bot.media.vision import image_type, is_wechat_image_url
from testing.console import login
from testing.fakes.openai_server import FakeOpenAI, tiny_png
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.loopback import LoopbackAdapter
from testing.pages import PUBLIC_BASE
from testing.patience import wait_for
from tests.conftest import Bot
from tests.integration.test_voice import ERROR_BODIES

VISION = "gpt-4o-vision"
ADMIN = "admin-1"
PHOTO = tiny_png(3, 2, (10, 200, 30))


@pytest.fixture
def vision_bot(make_bot: Callable[..., Bot], fake_openai: FakeOpenAI) -> Bot:
    fake_openai.set_behavior(vision_models=(VISION,))  # the chat model would refuse an image
    return make_bot(vision_model=VISION)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def test_a_photo_is_described_and_the_question_after_it_is_about_it(
    vision_bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    fake_wechat.add_media("photo-1", PHOTO, "image/png")
    sim = vision_bot.simulator()

    described = sim.send_image("user-1", "photo-1")
    assert described.text == "echo: " + texts.PHOTO_DESCRIBE
    [download] = fake_wechat.requests_to("/cgi-bin/media/get")
    assert download.query["media_id"] == "photo-1"
    [asked] = fake_openai.chat_requests()
    assert asked["model"] == VISION
    text_part, image_part = asked["messages"][-1]["content"]
    assert text_part == {"type": "text", "text": texts.PHOTO_DESCRIBE}
    assert image_part == {"type": "image_url", "image_url": {"url": data_url(PHOTO)}}

    answered = sim.send_text("user-1", "这张图里是什么？")
    assert answered.text == "echo: 这张图里是什么？"
    follow_up = fake_openai.chat_requests()[-1]
    assert follow_up["model"] == VISION
    *earlier, last = follow_up["messages"]
    assert last["content"][0] == {"type": "text", "text": "这张图里是什么？"}
    assert last["content"][1]["image_url"]["url"] == data_url(PHOTO)
    # the earlier turn is the photo's note and its description, as text
    assert {"role": "user", "content": texts.PHOTO_NOTE} in earlier
    assert all(isinstance(message["content"], str) for message in earlier)

    wait_for(lambda: len(vision_bot.runtime.history.messages("user-1")) == 4, what="the second turn")
    history = vision_bot.runtime.history.messages("user-1")
    assert history == [
        {"role": "user", "content": texts.PHOTO_NOTE},
        {"role": "assistant", "content": "echo: " + texts.PHOTO_DESCRIBE},
        {"role": "user", "content": "这张图里是什么？"},
        {"role": "assistant", "content": "echo: 这张图里是什么？"},
    ]
    assert "base64" not in str(history)


def photo_then_reset(bot: Bot, fake_wechat: FakeWeChatAPI, reset: Callable[[], None]) -> None:
    """A photo described (its turn in the history), then `reset`: the photo is forgotten with the
    conversation."""
    fake_wechat.add_media("photo-1", PHOTO, "image/png")
    assert bot.simulator().send_image("user-1", "photo-1").text == "echo: " + texts.PHOTO_DESCRIBE
    wait_for(lambda: len(bot.runtime.history.messages("user-1")) == 2, what="the photo's turn")
    assert bot.runtime.photos.recent("user-1") is not None
    reset()
    assert bot.runtime.history.messages("user-1") == []
    assert bot.runtime.photos.recent("user-1") is None


def assert_asked_without_the_photo(bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI) -> None:
    assert bot.simulator().send_text("user-1", "你好").text == "echo: 你好"
    asked = fake_openai.chat_requests()[-1]
    assert asked["model"] != VISION
    assert asked["messages"][-1] == {"role": "user", "content": "你好"}
    assert len(fake_wechat.requests_to("/cgi-bin/media/get")) == 1  # the photo was not fetched again


def test_reset_forgets_the_photo_too(
    vision_bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    """/reset forgot the conversation but kept the photo: for PHOTO_TTL every new question still went to
    the vision model with the old photo."""
    sim = vision_bot.simulator()

    def reset() -> None:
        assert sim.send_text("user-1", "/reset").text == texts.RESET_DONE

    photo_then_reset(vision_bot, fake_wechat, reset)
    assert_asked_without_the_photo(vision_bot, fake_openai, fake_wechat)


def test_the_consoles_reset_forgets_the_photo_too(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    fake_openai.set_behavior(vision_models=(VISION,))
    bot = make_bot(vision_model=VISION, public_base_url=PUBLIC_BASE, wechat_admin_openids=[ADMIN])
    client = bot.app.test_client()
    csrf = login(client, bot.app, ADMIN)

    def reset() -> None:
        assert client.post("/console/users/user-1/reset", data={CSRF_FIELD: csrf}).status_code == 303

    photo_then_reset(bot, fake_wechat, reset)
    assert_asked_without_the_photo(bot, fake_openai, fake_wechat)


def test_when_the_media_api_refuses_the_picurl_on_wechats_image_host_is_used(
    vision_bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    fake_wechat.add_picture("/mmbiz_jpg/photo-2/0", PHOTO, "image/png")
    cdn = LoopbackAdapter(fake_wechat.url)  # mmbiz.qpic.cn, answered by the fake
    vision_bot.runtime.vision.http.mount("http://mmbiz.qpic.cn/", cdn)
    reply = vision_bot.simulator().send_image("user-1", "photo-2")  # no such media: 40007
    assert reply.text == "echo: " + texts.PHOTO_DESCRIBE
    assert cdn.asked == ["http://mmbiz.qpic.cn/mmbiz_jpg/photo-2/0"]
    assert fake_openai.image_parts()[0]["image_url"]["url"] == data_url(PHOTO)


@pytest.mark.parametrize(("body", "content_type"), ERROR_BODIES)
def test_an_error_body_from_the_media_api_falls_back_to_the_picurl(
    vision_bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI, body: bytes, content_type: str
) -> None:
    """An error body is a refusal like an errcode: not the AI's failure, nor a file that is no image."""
    fake_wechat.add_media("photo-4", body, content_type)
    fake_wechat.add_picture("/mmbiz_jpg/photo-4/0", PHOTO, "image/png")
    cdn = LoopbackAdapter(fake_wechat.url)
    vision_bot.runtime.vision.http.mount("http://mmbiz.qpic.cn/", cdn)
    reply = vision_bot.simulator().send_image("user-1", "photo-4")
    assert reply.text == "echo: " + texts.PHOTO_DESCRIBE
    assert cdn.asked == ["http://mmbiz.qpic.cn/mmbiz_jpg/photo-4/0"]
    assert fake_openai.image_parts()[0]["image_url"]["url"] == data_url(PHOTO)


def test_an_error_body_and_no_picture_at_the_picurl_is_a_failed_photo(
    vision_bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    fake_wechat.add_media("photo-5", b'{"errmsg": "media not found"}', "application/json")
    cdn = LoopbackAdapter(fake_wechat.url)  # which has no picture at that path: 404
    vision_bot.runtime.vision.http.mount("http://mmbiz.qpic.cn/", cdn)
    assert vision_bot.simulator().send_image("user-1", "photo-5").text == texts.PHOTO_FAILED
    assert cdn.asked == ["http://mmbiz.qpic.cn/mmbiz_jpg/photo-5/0"]
    assert fake_openai.chat_requests() == []


def test_a_picurl_off_wechats_image_hosts_is_never_fetched(
    vision_bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    fake_wechat.add_picture("/mmbiz_jpg/photo-3/0", PHOTO, "image/png")
    port = fake_wechat.url.rsplit(":", 1)[1]
    sim = vision_bot.simulator()
    for url in (
        f"http://127.0.0.1:{port}/mmbiz_jpg/photo-3/0",
        "http://mmbiz.qpic.cn.evil.example/mmbiz_jpg/photo-3/0",
        "http://user@mmbiz.qpic.cn/mmbiz_jpg/photo-3/0",
        "http://mmbiz.qpic.cn:8080/mmbiz_jpg/photo-3/0",
        "file:///etc/passwd",
    ):
        assert sim.send_image("user-1", "photo-3", pic_url=url).text == texts.PHOTO_FAILED, url
    assert fake_wechat.requests_to("/mmbiz_jpg/photo-3/0") == []
    assert fake_openai.chat_requests() == []


def test_a_photo_over_the_size_limit_or_not_an_image_is_refused(
    vision_bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vision, "PHOTO_MAX_BYTES", len(PHOTO) - 1)
    fake_wechat.add_media("big", PHOTO, "image/png")
    sim = vision_bot.simulator()
    assert sim.send_image("user-1", "big").text == texts.PHOTO_FAILED
    fake_wechat.add_media("text", b"<html>not a photo</html>", "image/png")
    assert sim.send_image("user-1", "text").text == texts.PHOTO_FAILED
    assert fake_openai.chat_requests() == []


def test_without_vision_model_photos_get_the_polite_text(bot: Bot, fake_openai: FakeOpenAI) -> None:
    assert bot.simulator().send_image("user-1", "photo-1").text == texts.UNSUPPORTED
    assert fake_openai.chat_requests() == []


def test_wechat_image_hosts_and_image_types() -> None:
    assert is_wechat_image_url("http://mmbiz.qpic.cn/mmbiz_jpg/abc/0")
    assert is_wechat_image_url("https://wx.qlogo.cn/mmhead/abc/0")
    for url in (
        "http://qpic.cn.evil.example/x",
        "http://evilqpic.cn/x",
        "ftp://mmbiz.qpic.cn/x",
        "http://mmbiz.qpic.cn:99999/x",
        "http://[::1]/x",
        "javascript:alert(1)",
    ):
        assert not is_wechat_image_url(url), url
    assert image_type(PHOTO) == "image/png"
    assert image_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert image_type(b"GIF89a...") == "image/gif"
    assert image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert image_type(b"%PDF-1.7") is None
