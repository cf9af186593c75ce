"""The bot: WeChat protocol and API, delivery (the 5-second logic), stores, answering jobs, LLM backends."""
