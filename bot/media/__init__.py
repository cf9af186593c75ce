"""Images, voice transcription and moderation: the media services besides the chat model."""
