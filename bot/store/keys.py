"""Every Redis key the bot uses, built in one place, each with its lifetime.

Keys are shared by every web process, job worker and machine of one deployment. Only the stores
of `bot/store/` import this module: each key family has one store that reads and writes it.
"""

from __future__ import annotations

PREFIX = "wxbot"

#: a push's record (attempt count, plan, the reply given) outlives WeChat's ~15 s of retries
MESSAGE_TTL = 3600
#: the conversation of a user is forgotten after this long without a message (setting HISTORY_TTL)
#: an answer and its pages live this long (setting ANSWER_TTL)
#: the lock that serialises one user's deliveries is held for at most this long: the work under it is a
#: few Redis commands, and a holder killed under it must not outlast the waits for it (5 s: the job's
#: `user_lock`, the claims' BUSY_LIMIT), or a waiter gives up on a lock nobody holds any more
USER_LOCK_TTL = 3
#: the access_token lock: one process fetches, the others wait for it
TOKEN_LOCK_TTL = 15
#: we stop using a token this long before WeChat says it expires
TOKEN_EXPIRY_MARGIN = 300
#: after WeChat answers 48001 (no customer-service permission) we stay passive this long
CS_UNAUTHORIZED_TTL = 3600


#: a signature's record outlives the last instant its timestamp is accepted by this much (seconds):
#: room for web processes whose clocks are behind the one that wrote it
SIGNED_SLACK = 60


def signed(timestamp: str, nonce: str) -> str:
    """String: the digest of the request (method, query, body) a signature was first seen with; it
    lives until `timestamp` + WECHAT_TIMESTAMP_TOLERANCE + SIGNED_SLACK (the push's own timestamp)."""
    return f"{PREFIX}:signed:{timestamp}:{nonce}"


def message(dedup_key: str) -> str:
    """Hash: attempts, plan, reply, created — one per inbound push (MsgId or event identity)."""
    return f"{PREFIX}:msg:{dedup_key}"


def answer(answer_id: str) -> str:
    """Hash: openid, question, status, error, owner, reserved_until, created, restarts."""
    return f"{PREFIX}:ans:{answer_id}"


def answer_pages(answer_id: str) -> str:
    """List of finished pages of an answer, in order."""
    return f"{PREFIX}:ans:{answer_id}:pages"


def answer_lease(answer_id: str) -> str:
    """String: the job run that is generating this answer (expires if its worker dies)."""
    return f"{PREFIX}:ans:{answer_id}:lease"


def answer_sent(answer_id: str) -> str:
    """Integer: pages already sent through the customer-service API (active mode)."""
    return f"{PREFIX}:ans:{answer_id}:sent"


def answer_sending(answer_id: str) -> str:
    """Integer (TTL SENDING_TTL): the page being sent through the customer-service API right now
    (not counted as sent until WeChat accepted it; hidden from 继续 meanwhile)."""
    return f"{PREFIX}:ans:{answer_id}:sending"


#: a customer-service send (with its retries) that takes longer than this is over, or its worker died
SENDING_TTL = 30


def owed(openid: str) -> str:
    """List of answer ids whose first page has not reached the user yet, oldest first (and answers stopped
    part-way, until their last page has: their hash's `owed_from` — by the customer-service API, or the
    answer being read when a 继续 took an owed answer; those go first)."""
    return f"{PREFIX}:user:{openid}:owed"


def current(openid: str) -> str:
    """Hash: answer (id of the answer being read), cursor (pages delivered) — for 继续."""
    return f"{PREFIX}:user:{openid}:current"


def history(openid: str) -> str:
    """List of JSON chat messages (OpenAI format), oldest first."""
    return f"{PREFIX}:user:{openid}:history"


def asking(openid: str) -> str:
    """Sorted set: the user's answers (ids) by the time their questions were asked, the last ASKING_WINDOW
    seconds — which questions asked before a new one are still being answered when its prompt is built."""
    return f"{PREFIX}:user:{openid}:asking"


#: how far back `asking` looks (seconds): an answer unfinished for longer is given up (ABANDONED_AFTER)
ASKING_WINDOW = 600


def user_lock(openid: str) -> str:
    return f"{PREFIX}:user:{openid}:lock"


def ready_channel(openid: str) -> str:
    """Pub/sub channel: something new to deliver for this user."""
    return f"{PREFIX}:ready:{openid}"


READY_PATTERN = f"{PREFIX}:ready:*"

ACCESS_TOKEN = f"{PREFIX}:wechat:access_token"
ACCESS_TOKEN_LOCK = f"{PREFIX}:wechat:access_token:lock"
CS_UNAUTHORIZED = f"{PREFIX}:wechat:cs_unauthorized"


def metric(name: str) -> str:
    """Hash: one field per label set (and per histogram bucket); no TTL, like any counter."""
    return f"{PREFIX}:metrics:{name}"


#: capped list of JSON records of answers that could not be delivered, newest first
UNDELIVERED = f"{PREFIX}:undelivered"
#: Dramatiq's list of queued job ids (its Redis broker's naming)
JOB_QUEUE = "dramatiq:answers"


def job_wakeup(queue: str) -> str:
    """Pub/sub channel: a job was just queued on Dramatiq's `queue` (idle job workers fetch at once
    instead of at their next poll; a hint only, the queue itself is Dramatiq's)."""
    return f"{PREFIX}:jobs:wakeup:{queue}"


# --- admin, limits, runtime settings (chat commands) ----------------------------------------
#: Set: openids made admin with /auth (WECHAT_ADMIN_OPENIDS are admins too)
ADMINS = f"{PREFIX}:admins"
#: Set: banned openids
BANNED = f"{PREFIX}:banned"
#: capped list of JSON records of admin commands, newest first
AUDIT = f"{PREFIX}:audit"
#: Hash: settings changed in chat (system_prompt, welcome_text, daily_quota)
OVERRIDES = f"{PREFIX}:overrides"
#: Sorted set (TTL the 48 h window, refreshed by every message; older entries trimmed on write):
#: openid → time of the user's last message, events not counted; an unsubscribe removes the user
#: (customer-service window, broadcast)
LAST_SEEN = f"{PREFIX}:last_seen"
#: followers are listed in the console for this long after their last message (seconds)
FOLLOWER_TTL = 30 * 86400
#: Sorted set (TTL FOLLOWER_TTL, older entries trimmed on write): openid → time of the user's last message,
#: for the console's list of followers
FOLLOWERS = f"{PREFIX}:followers"


def follower_messages(openid: str) -> str:
    """Integer (TTL FOLLOWER_TTL, renewed by each message): messages a follower sent since they started
    writing after a silence of FOLLOWER_TTL (the console's message count)."""
    return f"{PREFIX}:user:{openid}:messages"


#: String: the report of the last broadcast
BROADCAST_REPORT = f"{PREFIX}:broadcast:report"
#: a broadcast's record and audience are kept this long (seconds)
BROADCAST_TTL = 7 * 86400


def broadcast(broadcast_id: str) -> str:
    """Hash (TTL BROADCAST_TTL): admin, text, total, claimed (next audience index), sent, failed,
    last_claim (time), reported."""
    return f"{PREFIX}:broadcast:{broadcast_id}"


def broadcast_audience(broadcast_id: str) -> str:
    """List (TTL BROADCAST_TTL): the openids a broadcast goes to, fixed when it starts."""
    return f"{PREFIX}:broadcast:{broadcast_id}:audience"


#: an admin code is valid this long (seconds), once
ADMIN_CODE_TTL = 300
#: failed /auth attempts are counted over this window (seconds)
AUTH_FAILURE_WINDOW = 3600
#: a day's counters are kept this long after the day (seconds)
DAILY_TTL = 3 * 86400
#: minutes mode ends by itself after this long without /minutes end (seconds)
MINUTES_TTL = 3 * 3600
#: a model picked with /model is used this long, then the configured default again (seconds): a week,
#: like a conversation's history (HISTORY_TTL's default)
MODEL_CHOICE_TTL = 7 * 86400
#: the per-minute rate counter outlives its minute by this long (seconds)
RATE_TTL = 120


def admin_code(digest: str) -> str:
    """String (TTL ADMIN_CODE_TTL): a one-time admin code, stored by its SHA-256 only."""
    return f"{PREFIX}:admin_code:{digest}"


def auth_failures(openid: str) -> str:
    """Integer (TTL AUTH_FAILURE_WINDOW): failed /auth attempts of one user."""
    return f"{PREFIX}:auth_failures:{openid}"


def usage(day: str, openid: str) -> str:
    """Integer (TTL DAILY_TTL): questions a user asked on `day` (YYYYMMDD)."""
    return f"{PREFIX}:usage:{day}:{openid}"


def image_usage(day: str, openid: str) -> str:
    """Integer (TTL DAILY_TTL): images a user asked for with /image on `day` (YYYYMMDD)."""
    return f"{PREFIX}:usage:{day}:{openid}:images"


def rate(openid: str, minute: int) -> str:
    """Integer (TTL RATE_TTL): messages (questions, commands, meeting pieces) a user sent in one minute."""
    return f"{PREFIX}:rate:{openid}:{minute}"


def day_users(day: str) -> str:
    """Set (TTL DAILY_TTL): users who wrote on `day`."""
    return f"{PREFIX}:stats:{day}:users"


def day_messages(day: str) -> str:
    """Integer (TTL DAILY_TTL): messages users sent on `day` (events, such as a follow or a menu click, not
    counted)."""
    return f"{PREFIX}:stats:{day}:messages"


def day_metric(day: str, name: str) -> str:
    """Hash (TTL HISTORY_TTL): one counter or histogram of `day`, fields as in `metric` (for /stats and
    the console's 30-day charts)."""
    return f"{PREFIX}:stats:{day}:metric:{name}"


# --- the console overview's history (written by bot/store/stats.py and bot/store/metrics.py) -------
#: the per-hour distinct users are kept this long (seconds): all of today, whatever the hour
HOURLY_TTL = 48 * 3600
#: the per-day history (messages per hour, distinct users, each metric's day mirror) is kept this long
#: after its day (seconds): the overview's 30 days, with room for a month of 31 and late readers
HISTORY_TTL = 40 * 86400


def day_hours(day: str) -> str:
    """Hash (TTL HISTORY_TTL): hour of `day` ("00"…"23", in TIMEZONE) → messages received in it (the
    hour that repeats when daylight-saving time ends counts both)."""
    return f"{PREFIX}:stats:{day}:hours"


def hour_users(day: str, hour: str) -> str:
    """HyperLogLog (TTL HOURLY_TTL): users who wrote in `hour` ("00"…"23") of `day`."""
    return f"{PREFIX}:stats:{day}:hour:{hour}:users"


def day_users_estimate(day: str) -> str:
    """HyperLogLog (TTL HISTORY_TTL): users who wrote on `day`, counted to within about 1 % (the exact
    set `day_users` is kept DAILY_TTL only: a set of a month of openids is too large to keep)."""
    return f"{PREFIX}:stats:{day}:users:hll"


def user_model(openid: str) -> str:
    """String (TTL MODEL_CHOICE_TTL): the model a user switched to with /model."""
    return f"{PREFIX}:user:{openid}:model"


def minutes(openid: str) -> str:
    """List (TTL MINUTES_TTL): transcribed pieces of a meeting being recorded with /minutes."""
    return f"{PREFIX}:user:{openid}:minutes"


def minutes_pending(openid: str) -> str:
    """Integer (TTL MINUTES_TTL): voice pieces of the meeting still being transcribed (never below 0)."""
    return f"{PREFIX}:user:{openid}:minutes:pending"


def minutes_meeting(openid: str) -> str:
    """String (TTL MINUTES_TTL): the id of the meeting whose pieces `minutes` holds; a voice piece's job
    writes its transcript only while this is still its meeting."""
    return f"{PREFIX}:user:{openid}:minutes:meeting"


def minutes_on(openid: str) -> str:
    """String (TTL MINUTES_TTL): present while a user records a meeting with /minutes."""
    return f"{PREFIX}:user:{openid}:minutes:on"


# --- job workers' heartbeats (Dramatiq's Redis broker; read by bot/store/workers.py) -------------
#: Sorted set of Dramatiq's Redis broker (namespace "dramatiq"): broker id → time of its last command,
#: in ms since the epoch by the clock of the host that sent it. Every broker command writes it: the
#: fetches of the job workers, but also the web tier's enqueues; job workers' ids start with
#: JOB_WORKER_ID_PREFIX so that only theirs count as a worker's heartbeat. Dramatiq removes an id a
#: while after its heartbeats stop.
JOB_HEARTBEATS = "dramatiq:__heartbeats__"
#: the start of a job-worker process's broker id (Dramatiq names its ack sets after the id: no glob
#: characters)
JOB_WORKER_ID_PREFIX = f"{PREFIX}-worker-"


def job_worker_id(unique: str) -> str:
    """The Dramatiq broker id of a process that runs job workers (a member of JOB_HEARTBEATS)."""
    return f"{JOB_WORKER_ID_PREFIX}{unique}"


# --- knowledge base (bot/store/knowledge.py) ---------------------------------------------------
#: Integer: bumped by every change of the knowledge base; each process rebuilds its in-memory index
#: when it differs from the one it built (no TTL, like the knowledge base itself)
KB_VERSION = f"{PREFIX}:kb:version"
#: Hash: document id → JSON of the document's record (title, source, link, passages, when added…)
KB_DOCUMENTS = f"{PREFIX}:kb:docs"
#: Hash: the last (or running) sync of the account's articles — status, started, finished, by, counts
KB_SYNC = f"{PREFIX}:kb:sync"
#: String (TTL KB_SYNC_LOCK_TTL, renewed while the sync works): the token of the one running sync
KB_SYNC_LOCK = f"{PREFIX}:kb:sync:lock"
#: a sync that has not reported progress for this long (seconds) has died; another may start
KB_SYNC_LOCK_TTL = 300


def kb_passages(doc_id: str) -> str:
    """String: JSON list of a document's passages (text, section, tokens); no TTL."""
    return f"{PREFIX}:kb:doc:{doc_id}:passages"


def kb_vectors(doc_id: str) -> str:
    """String: base64 of the float32 embedding matrix of a document's passages (EMBEDDING_MODEL set)."""
    return f"{PREFIX}:kb:doc:{doc_id}:vectors"


# --- answer pages (PUBLIC_BASE_URL) and photos (VISION_MODEL) --------------------------------------
def page_token(token: str) -> str:
    """String: the id of the answer an answer page's token opens; it expires with the answer (the
    answer's remaining ANSWER_TTL when the token is made)."""
    return f"{PREFIX}:page:{token}"


def answer_page(answer_id: str) -> str:
    """String: the token of an answer's page (one page per answer); expires with the answer."""
    return f"{PREFIX}:ans:{answer_id}:page"


def answer_live(answer_id: str) -> str:
    """Hash: the answer as its page shows it while it is written — text (the model's Markdown so far),
    reasoning, state (thinking | writing | done | failed), error, sources (JSON), version (counts the
    writes); expires with the answer."""
    return f"{PREFIX}:ans:{answer_id}:live"


#: a photo is what the user's questions are about for this long after it was sent (seconds)
PHOTO_TTL = 600


def user_photo(openid: str) -> str:
    """Hash (TTL PHOTO_TTL): the last photo a user sent — media_id, pic_url, at (time sent). Only the
    reference: the image is fetched again from WeChat when a question needs it, never kept here."""
    return f"{PREFIX}:user:{openid}:photo"


def photo_url(media_id: str) -> str:
    """String (TTL PHOTO_TTL): the PicUrl WeChat sent with a photo, for when the media API refuses it."""
    return f"{PREFIX}:photo:{media_id}:url"


# --- operator console (bot/store/console.py) -----------------------------------------------------
#: a console login link is valid this long (seconds), once
CONSOLE_LOGIN_TTL = 300
#: a console session lasts this long from the login that started it (seconds), not renewed by use
CONSOLE_SESSION_TTL = 12 * 3600


def console_login(digest: str) -> str:
    """String (TTL CONSOLE_LOGIN_TTL): JSON {openid, expires} of a one-time login link, stored by the
    SHA-256 of its token only (a copy of Redis does not hold a usable link)."""
    return f"{PREFIX}:console:login:{digest}"


def console_session(digest: str) -> str:
    """Hash (TTL CONSOLE_SESSION_TTL): openid, csrf, created, expires of a console session, stored by the
    SHA-256 of the session id that the browser's cookie holds."""
    return f"{PREFIX}:console:session:{digest}"


def console_sessions(openid: str) -> str:
    """Set (TTL CONSOLE_SESSION_TTL, renewed by each login): the session digests of one admin, so that
    `/console logout` ends all of them."""
    return f"{PREFIX}:console:admin:{openid}:sessions"
