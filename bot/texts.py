"""Every text a WeChat user can see, in one place, so that an operator can find and change it."""

from __future__ import annotations

#: sent on a follow when WELCOME_TEXT is not set
WELCOME = "感谢关注！直接发消息即可和 AI 助手聊天。发送 /help 查看可用命令。"

#: last attempt of WeChat's three and the answer is still being written
STILL_WORKING = "回答还在生成中，请稍等十几秒后发送任意消息（如「继续」）获取。"

#: appended to a page when more pages follow
MORE_HINT = "\n\n（未完，回复「继续」查看下一页）"

#: put before an answer that reaches the user on a later message than the question
LATE_ANSWER_PREFIX = "【你之前的问题「{question}」的回答】\n"

#: appended when the user's new question was queued behind a late answer
QUEUED_NOTE = "\n\n（你刚发的消息已收到，回答好后发送「继续」获取。）"

#: 继续 with nothing left to read
NOTHING_MORE = "没有更多内容了，直接发消息开始新的提问吧。"

#: the LLM failed; one plain sentence
LLM_FAILED = "抱歉，AI 服务暂时出了问题，没能回答这个问题，请稍后再试。"
LLM_TIMEOUT = "抱歉，AI 思考超时了，请稍后再试，或把问题说得简短一些。"
LLM_EMPTY = "抱歉，AI 这次没有给出回答，请换个说法再试一次。"

#: the answer expired before anybody fetched it
ANSWER_EXPIRED = "抱歉，这条回答已过期，请重新提问。"

#: a worker died mid-answer and the answer was written again from the start
REGENERATED_NOTE = "（生成中断，以下为重新生成的回答）\n"

VOICE_UNRECOGNISED = "抱歉，没听清这条语音，请再说一遍或改发文字。"
VOICE_FAILED = "抱歉，语音识别暂时不可用，请改发文字。"

UNSUPPORTED = "暂时只支持文字和语音消息，请直接发文字提问。"
EMPTY_MESSAGE = "请发送文字内容提问。"

RESET_DONE = "好的，之前的对话已清空，我们重新开始吧。"
UNKNOWN_COMMAND = "未知命令，发送 /help 查看可用命令。"
HELP_HEADER = "可用命令："
HELP_FOOTER = "直接发文字或语音即可提问；回答较长时回复「继续」查看下一页。"

#: words that fetch the next page or a late answer instead of asking a new question
FETCH_WORDS = ("继续", "继续。", "继续！", "continue", "next", "下一页", "?", "？")

#: Redis or another part of the bot itself is down
SERVICE_DOWN = "服务暂时繁忙，请稍后再试。"
