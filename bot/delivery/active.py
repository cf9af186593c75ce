"""Active delivery (verified accounts): pages go out through the customer-service API.

At most `WECHAT_CS_QUOTA` (5) messages per user message; the rest stays readable with 继续.
When WeChat refuses (48001 no permission, 45015 window closed, 45047 quota used up) the answer
falls back to passive delivery: it waits in Redis for the user's next message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot import texts
from bot.config import Settings
from bot.replies import image_media_id
from bot.store.answers import Answer, AnswerStore, Target
from bot.store.metrics import Metrics
from bot.store.wechat import WeChatState
from bot.wechat.api import CS_REFUSED, WeChatAPI, WeChatAPIError

log = logging.getLogger(__name__)

#: transient failures (network, WeChat busy) are retried this many times before falling back
SEND_TRIES = 3


def delivery_mode(settings: Settings, state: WeChatState) -> str:
    """`active` only for accounts that may use the customer-service API right now."""
    if settings.wechat_reply_mode != "active" or state.cs_unauthorized():
        return "passive"
    return "active"


class ActiveSender:
    def __init__(
        self, answers: AnswerStore, api: WeChatAPI, state: WeChatState, quota: int, metrics: Metrics
    ) -> None:
        self.metrics = metrics
        self.answers = answers
        self.api = api
        self.state = state
        self.quota = quota
        #: waits between tries of a failed send (a test's fake clock stands in)
        self.sleep: Callable[[float], None] = time.sleep

    def typing(self, openid: str) -> None:
        try:
            self.api.typing(openid)
        except WeChatAPIError as exc:
            log.info("typing indicator not shown for %s: %s", openid, exc)

    def send_ready_pages(self, answer_id: str) -> None:
        """Send every finished page not sent yet, within the quota."""
        while (answer := self.answers.get(answer_id)) is not None and answer.delivery == "active":
            claimed = self._claim_next(answer)
            if claimed is None:
                return
            index, text = claimed
            if not self._send(answer, index, text):
                return

    def _claim_next(self, answer: Answer) -> tuple[int, str] | None:
        """Reserve the next page to send (under the user lock, so 继续 cannot take it too). Only the run
        that holds the answer's lease sends, so no two senders take the same page."""
        with self.answers.user_lock(answer.openid):
            sent = max(
                self.answers.sent_count(answer.id), self.answers.cursor(answer)
            )  # 继续 may have read ahead
            if sent >= self.quota or not answer.page_ready(sent):
                return None
            page = self.answers.page(answer, sent)
            if page is None:
                return None
            self.answers.start_sending(answer.id, sent)
        if image_media_id(page) is not None:
            return sent, page
        more = answer.more_after(sent)
        hint = texts.MORE_HINT if more and sent + 1 == self.quota else ""
        return sent, page.strip("\n") + hint

    def _send(self, answer: Answer, index: int, text: str) -> bool:
        for attempt in range(1, SEND_TRIES + 1):
            try:
                self._send_one(answer.openid, text)
            except WeChatAPIError as exc:
                if exc.errcode in CS_REFUSED or attempt == SEND_TRIES:
                    self._fall_back(answer, index, exc)
                    return False
                log.warning("customer-service send failed (%s); retrying", exc)
                self.sleep(0.5 * attempt)
                continue
            with self.answers.user_lock(answer.openid):
                self.answers.confirm_sent(answer.id, index)
                # an older question's answer coming now takes no rest the user was told to read with 继续
                self.answers.mark_delivered(Target(answer, index, from_owed=False), keep_rest=self.quota)
            self.metrics.inc("pages_delivered", path="customer_service")
            return True
        return False

    def _send_one(self, openid: str, page: str) -> None:
        media_id = image_media_id(page)
        if media_id is not None:
            self.api.send_image(openid, media_id)
        else:
            self.api.send_text(openid, page)

    def _fall_back(self, answer: Answer, index: int, exc: WeChatAPIError) -> None:
        """Give the unsent page back and let the user's next message fetch it, and the rest after it."""
        reason = f"cs_refused:{exc.errcode}" if exc.errcode else f"cs_failed:{exc.errmsg[:60]}"
        self.metrics.undelivered(
            answer.id, answer.openid, f"{reason} (page {index + 1}; waits for next message)"
        )
        self.metrics.inc("customer_service_failures", errcode=str(exc.errcode or "none"))
        if exc.errcode == 48001:
            self.state.mark_cs_unauthorized()
        with self.answers.user_lock(answer.openid):
            self.answers.set_sent(answer.id, index)
            self.answers.stop_sending(answer.id)
            # from page `index` on, whichever page it is: the pages sent may not have said that more
            # follows (only the quota-th says so), and a later question must not take the rest's place
            self.answers.owe(answer.id, answer.openid, start=index)
