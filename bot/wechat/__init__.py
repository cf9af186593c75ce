"""WeChat's platform: its protocol (signatures, AES, XML) and its server API (access_token, errcodes)."""
