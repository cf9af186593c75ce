"""Core of the WeChat LLM bot: protocol, delivery (the 5 s logic), answers, jobs, LLM backends."""
