"""The FastAPI app that streams step events over Server-Sent Events, and its dashboard."""
