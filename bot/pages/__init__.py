"""The answer page (PUBLIC_BASE_URL): one answer and its question at {PUBLIC_BASE_URL}/a/{token},
rendered on the server and updated live while it is written (`views`); the links that chat replies
carry to it (`links`); what a generation run records for it (`live`)."""
